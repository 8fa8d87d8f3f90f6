//! Key, team and user management (master key): LiteLLM's `/key/*`, `/team/*`, `/user/*`.

use crate::app::AppState;
use crate::auth::directory::Directory;
use crate::auth::{keys, Caller};
use crate::error::GatewayError;
use crate::limits::duration;
use crate::store::principals::{KeyRow, Limits, TeamRow, UserRow};
use crate::store::{now_ms, Store, StoreError};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

type Out = Result<Json<Value>, GatewayError>;

pub(crate) fn store_err(e: StoreError) -> GatewayError {
    match e {
        StoreError::Conflict(m) => GatewayError::invalid(m),
        other => GatewayError::StoreUnavailable(other.to_string()),
    }
}

/// The store and directory, for an admin caller only.
pub(crate) async fn admin(state: &AppState, headers: &HeaderMap) -> Result<(Arc<Store>, Arc<Directory>), GatewayError> {
    let caller = state.auth.authenticate(headers).await?;
    if !caller.is_admin() {
        return Err(GatewayError::Unauthorized(
            "this route needs the master key (general_settings.master_key)".into(),
        ));
    }
    stores(state)
}

fn stores(state: &AppState) -> Result<(Arc<Store>, Arc<Directory>), GatewayError> {
    match (&state.store, &state.auth.directory) {
        (Some(s), Some(d)) => Ok((s.clone(), d.clone())),
        _ => Err(GatewayError::StoreUnavailable(
            "no database is configured (general_settings.disable_database is set)".into(),
        )),
    }
}

fn body(bytes: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match super::parse_json::<Value>(bytes)? {
        Value::Object(m) => Ok(m),
        _ => Err(GatewayError::invalid("the body must be a JSON object")),
    }
}

/// Typed reads of a request body, each error naming its field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
    fn string(&self, k: &str) -> Result<Option<String>, GatewayError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(GatewayError::invalid_param(k, format!("{k} must be a string"))),
        }
    }
    fn number(&self, k: &str) -> Result<Option<f64>, GatewayError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f >= 0.0) => Ok(n.as_f64()),
            Some(_) => Err(GatewayError::invalid_param(
                k,
                format!("{k} must be a non-negative number"),
            )),
        }
    }
    fn int(&self, k: &str) -> Result<Option<i64>, GatewayError> {
        Ok(self.number(k)?.map(|f| f as i64))
    }
    fn list(&self, k: &str) -> Result<Option<Vec<String>>, GatewayError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
                Ok(Some(a.iter().filter_map(Value::as_str).map(str::to_string).collect()))
            }
            Some(_) => Err(GatewayError::invalid_param(k, format!("{k} must be a list of strings"))),
        }
    }
    fn bool(&self, k: &str) -> Result<Option<bool>, GatewayError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(GatewayError::invalid_param(k, format!("{k} must be true or false"))),
        }
    }
    fn object(&self, k: &str) -> Result<Option<Value>, GatewayError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(_) => Err(GatewayError::invalid_param(k, format!("{k} must be an object"))),
        }
    }
    fn duration_ms(&self, k: &str) -> Result<Option<i64>, GatewayError> {
        match self.string(k)? {
            None => Ok(None),
            Some(s) => duration::parse_ms(&s).map(Some).ok_or_else(|| {
                GatewayError::invalid_param(
                    k,
                    format!("{k}: {s:?} is not a duration like 30s, 30m, 30h, 30d or 1mo"),
                )
            }),
        }
    }
    /// A custom key from field `k` (`sk-`, at least 12 characters), else a fresh random one.
    fn new_key(&self, k: &str) -> Result<String, GatewayError> {
        match self.string(k)? {
            Some(key) if key.starts_with("sk-") && key.len() >= 12 => Ok(key),
            Some(_) => Err(GatewayError::invalid_param(
                k,
                format!("{k} must start with sk- and be at least 12 characters"),
            )),
            None => Ok(keys::generate()),
        }
    }

    /// Applies the limit fields present in the body to `l`; returns the new reset time when the
    /// budget period changed.
    fn limits(&self, l: &mut Limits, reset_at: &mut Option<i64>, now: i64) -> Result<(), GatewayError> {
        if self.has("max_budget") {
            l.max_budget = self.number("max_budget")?;
        }
        if self.has("budget_duration") {
            let ms = self.duration_ms("budget_duration")?;
            l.budget_duration = self.string("budget_duration")?;
            *reset_at = ms.map(|ms| now + ms);
        }
        for (k, slot) in [
            ("rpm_limit", &mut l.rpm_limit),
            ("tpm_limit", &mut l.tpm_limit),
            ("max_parallel_requests", &mut l.max_parallel_requests),
        ] {
            if self.has(k) {
                *slot = self.int(k)?;
            }
        }
        Ok(())
    }
}

fn key_json(k: &KeyRow) -> Value {
    let mut v = serde_json::to_value(k).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("expires".into(), k.expires.map_or(Value::Null, |e| json!(iso(e))));
        o.insert(
            "budget_reset_at".into(),
            k.budget_reset_at.map_or(Value::Null, |e| json!(iso(e))),
        );
    }
    v
}

/// RFC 3339 of unix milliseconds (UTC).
pub fn iso(ms: i64) -> String {
    let day = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000) / 1000;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        crate::store::spend::day_string(day),
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub async fn generate(State(state): State<Arc<AppState>>, headers: HeaderMap, raw: axum::body::Bytes) -> Response {
    respond(generate_key(&state, &headers, &raw).await)
}

async fn generate_key(state: &AppState, headers: &HeaderMap, raw: &[u8]) -> Out {
    let (store, dir) = admin(state, headers).await?;
    let b = body(raw)?;
    let f = Fields(&b);
    let now = now_ms();
    let key = f.new_key("key")?;
    let team_id = f.string("team_id")?;
    if let Some(t) = &team_id {
        if store.get_team(t).await.map_err(store_err)?.is_none() {
            return Err(GatewayError::invalid_param(
                "team_id",
                format!("team_id {t} does not exist; create it with /team/new"),
            ));
        }
    }
    let mut limits = Limits::default();
    let mut reset = None;
    f.limits(&mut limits, &mut reset, now)?;
    let row = KeyRow {
        token: keys::hash(&key),
        key_name: keys::display_name(&key),
        key_alias: f.string("key_alias")?,
        team_id,
        user_id: f.string("user_id")?,
        models: f.list("models")?.unwrap_or_default(),
        tags: f.list("tags")?.unwrap_or_default(),
        metadata: f.object("metadata")?.unwrap_or_else(|| json!({})),
        limits,
        budget_reset_at: reset,
        spend: 0.0,
        allow_cloud: f.bool("allow_cloud")?.unwrap_or(true),
        blocked: f.bool("blocked")?.unwrap_or(false),
        expires: f.duration_ms("duration")?.map(|ms| now + ms),
        created_at: now,
        updated_at: now,
    };
    store.insert_key(&row).await.map_err(store_err)?;
    dir.key_created(&row.token);
    Ok(Json(issued_key_json(&row, &key)))
}

/// A key row as issued: the one and only time the key itself is shown.
fn issued_key_json(row: &KeyRow, key: &str) -> Value {
    let mut v = key_json(row);
    if let Some(o) = v.as_object_mut() {
        o.insert("key".into(), json!(key));
        o.insert("token_id".into(), json!(row.token));
    }
    v
}

fn respond(r: Out) -> Response {
    match r {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn find_key(store: &Store, f: &Fields<'_>) -> Result<KeyRow, GatewayError> {
    if let Some(k) = f.string("key")? {
        return store
            .get_key(&keys::to_token(&k))
            .await
            .map_err(store_err)?
            .ok_or_else(|| GatewayError::NotFound("key not found".into()));
    }
    if let Some(a) = f.string("key_alias")? {
        return store
            .key_by_alias(&a)
            .await
            .map_err(store_err)?
            .ok_or_else(|| GatewayError::NotFound(format!("no key with key_alias {a}")));
    }
    Err(GatewayError::invalid_param(
        "key",
        "name the key: key (the key or its hash) or key_alias",
    ))
}

pub async fn info(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    respond(
        async {
            let caller = state.auth.authenticate(&headers).await?;
            let (store, _) = stores(&state)?;
            let token = match (&caller, q.get("key")) {
                (c, Some(k)) if c.is_admin() => keys::to_token(k),
                // A key may read its own info.
                (Caller::Key(own), k) if k.is_none_or(|k| keys::to_token(k) == own.token) => own.token.clone(),
                _ => {
                    return Err(GatewayError::Unauthorized(
                        "/key/info of another key needs the master key".into(),
                    ))
                }
            };
            let row = store
                .get_key(&token)
                .await
                .map_err(store_err)?
                .ok_or_else(|| GatewayError::NotFound("key not found".into()))?;
            let live = state.auth.directory.as_ref().and_then(|d| d.cached_key(&token));
            let mut info = key_json(&row);
            if let (Some(o), Some(k)) = (info.as_object_mut(), live) {
                // In-memory spend is ahead of the database by at most one ledger batch.
                o.insert("spend".into(), json!(k.account.spend().max(row.spend)));
            }
            Ok(Json(json!({"key": token, "info": info})))
        }
        .await,
    )
}

pub async fn update(State(state): State<Arc<AppState>>, headers: HeaderMap, raw: axum::body::Bytes) -> Response {
    respond(
        async {
            let (store, dir) = admin(&state, &headers).await?;
            let b = body(&raw)?;
            let f = Fields(&b);
            let mut row = find_key(&store, &f).await?;
            let now = now_ms();
            f.limits(&mut row.limits, &mut row.budget_reset_at, now)?;
            if f.has("key_alias") {
                row.key_alias = f.string("key_alias")?;
            }
            if f.has("team_id") {
                row.team_id = f.string("team_id")?;
            }
            if f.has("user_id") {
                row.user_id = f.string("user_id")?;
            }
            if let Some(m) = f.list("models")? {
                row.models = m;
            }
            if let Some(t) = f.list("tags")? {
                row.tags = t;
            }
            if let Some(m) = f.object("metadata")? {
                row.metadata = m;
            }
            if let Some(a) = f.bool("allow_cloud")? {
                row.allow_cloud = a;
            }
            if let Some(b) = f.bool("blocked")? {
                row.blocked = b;
            }
            if f.has("duration") {
                row.expires = f.duration_ms("duration")?.map(|ms| now + ms);
            }
            row.updated_at = now;
            store.update_key(&row).await.map_err(store_err)?;
            dir.key_changed(&row).await?;
            Ok(Json(key_json(&row)))
        }
        .await,
    )
}

pub async fn delete(State(state): State<Arc<AppState>>, headers: HeaderMap, raw: axum::body::Bytes) -> Response {
    respond(
        async {
            let (store, dir) = admin(&state, &headers).await?;
            let b = body(&raw)?;
            let f = Fields(&b);
            let mut tokens: Vec<String> = f
                .list("keys")?
                .unwrap_or_default()
                .iter()
                .map(|k| keys::to_token(k))
                .collect();
            for alias in f.list("key_aliases")?.unwrap_or_default() {
                if let Some(k) = store.key_by_alias(&alias).await.map_err(store_err)? {
                    tokens.push(k.token);
                }
            }
            if tokens.is_empty() {
                return Err(GatewayError::invalid_param(
                    "keys",
                    "name the keys to delete: keys or key_aliases",
                ));
            }
            let mut deleted = Vec::new();
            for t in tokens {
                if store.delete_key(&t).await.map_err(store_err)? {
                    dir.key_gone(&t);
                    deleted.push(t);
                }
            }
            if deleted.is_empty() {
                return Err(GatewayError::NotFound("none of these keys exist".into()));
            }
            Ok(Json(json!({"deleted_keys": deleted})))
        }
        .await,
    )
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    respond(
        async {
            let (store, _) = admin(&state, &headers).await?;
            let page: i64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
            let size: i64 = q.get("size").and_then(|p| p.parse().ok()).unwrap_or(10).clamp(1, 100);
            let (rows, total) = store
                .list_keys(
                    q.get("team_id").map(String::as_str),
                    q.get("user_id").map(String::as_str),
                    q.get("key_alias").map(String::as_str),
                    (page - 1) * size,
                    size,
                )
                .await
                .map_err(store_err)?;
            let full = q.get("return_full_object").is_some_and(|v| v == "true");
            let keys: Vec<Value> = rows
                .iter()
                .map(|r| if full { key_json(r) } else { json!(r.token) })
                .collect();
            Ok(Json(json!({
                "keys": keys,
                "total_count": total,
                "current_page": page,
                "total_pages": (total + size - 1) / size,
            })))
        }
        .await,
    )
}

pub async fn regenerate(State(state): State<Arc<AppState>>, headers: HeaderMap, raw: axum::body::Bytes) -> Response {
    respond(
        async {
            let (store, dir) = admin(&state, &headers).await?;
            let b = body(&raw)?;
            let f = Fields(&b);
            let mut row = find_key(&store, &f).await?;
            let key = f.new_key("new_key")?;
            let old = row.token.clone();
            row.token = keys::hash(&key);
            row.key_name = keys::display_name(&key);
            row.updated_at = now_ms();
            if !store
                .rehash_key(&old, &row.token, &row.key_name, row.updated_at)
                .await
                .map_err(store_err)?
            {
                return Err(GatewayError::NotFound("key not found".into()));
            }
            dir.key_gone(&old);
            dir.key_created(&row.token);
            Ok(Json(issued_key_json(&row, &key)))
        }
        .await,
    )
}

pub async fn team_new(State(state): State<Arc<AppState>>, headers: HeaderMap, raw: axum::body::Bytes) -> Response {
    respond(
        async {
            let (store, _) = admin(&state, &headers).await?;
            let b = body(&raw)?;
            let f = Fields(&b);
            let now = now_ms();
            let mut limits = Limits::default();
            let mut reset = None;
            f.limits(&mut limits, &mut reset, now)?;
            let row = TeamRow {
                team_id: f.string("team_id")?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                team_alias: f.string("team_alias")?,
                models: f.list("models")?.unwrap_or_default(),
                metadata: f.object("metadata")?.unwrap_or_else(|| json!({})),
                limits,
                budget_reset_at: reset,
                spend: 0.0,
                blocked: f.bool("blocked")?.unwrap_or(false),
                created_at: now,
                updated_at: now,
            };
            store.insert_team(&row).await.map_err(store_err)?;
            Ok(Json(serde_json::to_value(&row).unwrap_or_default()))
        }
        .await,
    )
}

pub async fn team_info(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    respond(
        async {
            let (store, dir) = admin(&state, &headers).await?;
            let id = q
                .get("team_id")
                .ok_or_else(|| GatewayError::invalid_param("team_id", "team_id is required"))?;
            let mut row = store
                .get_team(id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| GatewayError::NotFound(format!("team {id} not found")))?;
            if let Ok(Some(a)) = dir.team(id).await {
                row.spend = a.spend().max(row.spend);
            }
            let (keys, _) = store
                .list_keys(Some(id), None, None, 0, 1000)
                .await
                .map_err(store_err)?;
            let keys: Vec<Value> = keys.iter().map(key_json).collect();
            Ok(Json(json!({"team_id": id, "team_info": row, "keys": keys})))
        }
        .await,
    )
}

pub async fn team_update(State(state): State<Arc<AppState>>, headers: HeaderMap, raw: axum::body::Bytes) -> Response {
    respond(
        async {
            let (store, dir) = admin(&state, &headers).await?;
            let b = body(&raw)?;
            let f = Fields(&b);
            let id = f
                .string("team_id")?
                .ok_or_else(|| GatewayError::invalid_param("team_id", "team_id is required"))?;
            let mut row = store
                .get_team(&id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| GatewayError::NotFound(format!("team {id} not found")))?;
            let now = now_ms();
            f.limits(&mut row.limits, &mut row.budget_reset_at, now)?;
            if f.has("team_alias") {
                row.team_alias = f.string("team_alias")?;
            }
            if let Some(m) = f.list("models")? {
                row.models = m;
            }
            if let Some(m) = f.object("metadata")? {
                row.metadata = m;
            }
            if let Some(b) = f.bool("blocked")? {
                row.blocked = b;
            }
            row.updated_at = now;
            store.update_team(&row).await.map_err(store_err)?;
            dir.team_changed(&row);
            Ok(Json(serde_json::to_value(&row).unwrap_or_default()))
        }
        .await,
    )
}

pub async fn user_new(State(state): State<Arc<AppState>>, headers: HeaderMap, raw: axum::body::Bytes) -> Response {
    respond(
        async {
            let (store, _) = admin(&state, &headers).await?;
            let b = body(&raw)?;
            let f = Fields(&b);
            let now = now_ms();
            let mut limits = Limits::default();
            let mut reset = None;
            f.limits(&mut limits, &mut reset, now)?;
            let row = UserRow {
                user_id: f.string("user_id")?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                user_email: f.string("user_email")?,
                models: f.list("models")?.unwrap_or_default(),
                metadata: f.object("metadata")?.unwrap_or_else(|| json!({})),
                limits,
                budget_reset_at: reset,
                spend: 0.0,
                created_at: now,
                updated_at: now,
            };
            store.insert_user(&row).await.map_err(store_err)?;
            let mut v = serde_json::to_value(&row).unwrap_or_default();
            // LiteLLM's /user/new also issues the user a key (auto_create_key, default true).
            if f.bool("auto_create_key")?.unwrap_or(true) {
                let key_body = json!({"user_id": row.user_id, "models": row.models});
                let Json(k) = generate_key(&state, &headers, key_body.to_string().as_bytes()).await?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("key".into(), k["key"].clone());
                }
            }
            Ok(Json(v))
        }
        .await,
    )
}

pub async fn user_info(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    respond(
        async {
            let (store, dir) = admin(&state, &headers).await?;
            let id = q
                .get("user_id")
                .ok_or_else(|| GatewayError::invalid_param("user_id", "user_id is required"))?;
            let mut row = store
                .get_user(id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| GatewayError::NotFound(format!("user {id} not found")))?;
            if let Ok(Some(a)) = dir.user(id).await {
                row.spend = a.spend().max(row.spend);
            }
            let (keys, _) = store
                .list_keys(None, Some(id), None, 0, 1000)
                .await
                .map_err(store_err)?;
            let keys: Vec<Value> = keys.iter().map(key_json).collect();
            Ok(Json(json!({"user_id": id, "user_info": row, "keys": keys})))
        }
        .await,
    )
}
