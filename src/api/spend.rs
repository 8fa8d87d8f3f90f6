//! Spend reports (master key): LiteLLM's `/spend/*` and `/global/spend*`, and `/savings`.
//!
//! Reports read the database, which trails live traffic by at most one ledger batch
//! (`spend_logs_flush_interval`, 1 s by default).

use super::keys::store_err;
use crate::app::AppState;
use crate::auth::keys;
use crate::error::GatewayError;
use crate::store::spend::{day_start_ms, parse_day, GroupBy, SpendFilter, SpendTotal};
use crate::store::Store;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

type Q = Query<HashMap<String, String>>;

async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Arc<Store>, GatewayError> {
    Ok(super::keys::admin(state, headers).await?.0)
}

/// `start_date` / `end_date` as `YYYY-MM-DD` (both days included), and the entity filters.
fn filter(q: &HashMap<String, String>) -> Result<SpendFilter, GatewayError> {
    let day = |k: &str| -> Result<Option<i64>, GatewayError> {
        q.get(k)
            .map(|s| {
                parse_day(s)
                    .ok_or_else(|| GatewayError::invalid_param(k, format!("{k} must be a date, YYYY-MM-DD: {s:?}")))
            })
            .transpose()
    };
    Ok(SpendFilter {
        api_key: q.get("api_key").map(|k| keys::to_token(k)),
        request_id: q.get("request_id").cloned(),
        team_id: q.get("team_id").cloned(),
        user_id: q.get("user_id").cloned(),
        start: day("start_date")?.map(day_start_ms),
        end: day("end_date")?.map(|d| day_start_ms(d + 1)),
    })
}

fn out(r: Result<Value, GatewayError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn logs(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Q) -> Response {
    out(async {
        let store = admin(&state, &headers).await?;
        let limit = q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(1000i64)
            .clamp(1, 10_000);
        let rows = store.spend_logs(&filter(&q)?, limit).await.map_err(store_err)?;
        Ok(serde_json::to_value(rows).unwrap_or_default())
    }
    .await)
}

pub async fn tags(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Q) -> Response {
    out(async {
        let store = admin(&state, &headers).await?;
        let rows = store.spend_by_tag(&filter(&q)?).await.map_err(store_err)?;
        let spend: Vec<Value> = rows
            .into_iter()
            .map(|(t, n, s)| json!({"individual_request_tag": t, "log_count": n, "total_spend": s}))
            .collect();
        Ok(json!({"spend_per_tag": spend}))
    }
    .await)
}

pub async fn global(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Q) -> Response {
    out(async {
        let store = admin(&state, &headers).await?;
        let t = store
            .spend_totals(&filter(&q)?, None, false, false)
            .await
            .map_err(store_err)?;
        let spend = t.first().map_or(0.0, |t| t.spend);
        Ok(json!({"spend": spend, "max_budget": Value::Null}))
    }
    .await)
}

pub async fn by_model(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Q) -> Response {
    out(async {
        let store = admin(&state, &headers).await?;
        let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10usize);
        let t = store
            .spend_totals(&filter(&q)?, Some(GroupBy::Model), false, false)
            .await
            .map_err(store_err)?;
        Ok(Value::Array(
            t.iter()
                .take(limit)
                .map(|t| {
                    json!({"model": t.group, "spend": t.spend, "requests": t.requests,
                    "total_tokens": t.prompt_tokens + t.completion_tokens})
                })
                .collect(),
        ))
    }
    .await)
}

pub async fn by_key(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Q) -> Response {
    out(async {
        let store = admin(&state, &headers).await?;
        let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10usize);
        let t = store
            .spend_totals(&filter(&q)?, Some(GroupBy::Key), false, false)
            .await
            .map_err(store_err)?;
        let mut rows = Vec::new();
        for t in t.iter().filter(|t| t.group.is_some()).take(limit) {
            let token = t.group.clone().unwrap_or_default();
            let key = store.get_key(&token).await.map_err(store_err)?;
            rows.push(json!({"api_key": token, "total_spend": t.spend,
                "key_alias": key.as_ref().and_then(|k| k.key_alias.clone()),
                "key_name": key.as_ref().map(|k| k.key_name.clone())}));
        }
        Ok(Value::Array(rows))
    }
    .await)
}

/// `group_by`: `team` (default), `api_key`, `user`, `model`, `route`; per day, with per-model detail.
pub async fn report(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Q) -> Response {
    out(async {
        let store = admin(&state, &headers).await?;
        let (by, label) = match q.get("group_by").map(String::as_str).unwrap_or("team") {
            "team" => (GroupBy::Team, "team_name"),
            "api_key" | "key" => (GroupBy::Key, "api_key"),
            "user" | "customer" => (GroupBy::User, "user_id"),
            "model" => (GroupBy::Model, "model"),
            "route" => (GroupBy::Route, "route"),
            other => {
                return Err(GatewayError::invalid_param(
                    "group_by",
                    format!("group_by must be team, api_key, user, model or route, not {other:?}"),
                ))
            }
        };
        let t = store.spend_totals(&filter(&q)?, Some(by), true, true).await.map_err(store_err)?;
        // day -> group -> (total, per-model detail)
        let mut days: BTreeMap<String, BTreeMap<String, (f64, Vec<Value>)>> = BTreeMap::new();
        for r in &t {
            let e = days
                .entry(r.day.clone().unwrap_or_default())
                .or_default()
                .entry(r.group.clone().unwrap_or_else(|| "(none)".into()))
                .or_default();
            e.0 += r.spend;
            e.1.push(json!({"model": r.model_group, "spend": r.spend, "total_tokens": r.prompt_tokens + r.completion_tokens}));
        }
        let list: Vec<Value> = days
            .into_iter()
            .map(|(day, groups)| {
                let groups: Vec<Value> = groups
                    .into_iter()
                    .map(|(g, (spend, metadata))| json!({label: g, "total_spend": spend, "metadata": metadata}))
                    .collect();
                json!({"group_by_day": day, "groups": groups})
            })
            .collect();
        Ok(Value::Array(list))
    }
    .await)
}

fn savings_line(t: &SpendTotal) -> Value {
    json!({
        "requests": t.requests,
        "spend": t.spend,
        "cloud_equivalent": t.cloud_equivalent,
        "saved": (t.cloud_equivalent - t.spend).max(0.0),
    })
}

/// What serving locally saved: spend, cloud-equivalent and saved, in total, per day and per model group.
pub async fn savings(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Q) -> Response {
    out(async {
        let store = admin(&state, &headers).await?;
        let f = filter(&q)?;
        let total = store.spend_totals(&f, None, false, false).await.map_err(store_err)?;
        let local = store
            .spend_totals(&f, Some(GroupBy::Route), false, false)
            .await
            .map_err(store_err)?;
        let per_day = store.spend_totals(&f, None, true, false).await.map_err(store_err)?;
        let per_model = store
            .spend_totals(&f, Some(GroupBy::Model), false, false)
            .await
            .map_err(store_err)?;
        let mut days: Vec<Value> = per_day
            .iter()
            .map(|t| {
                let mut v = savings_line(t);
                v["day"] = json!(t.day);
                v
            })
            .collect();
        days.sort_by(|a, b| a["day"].as_str().cmp(&b["day"].as_str()));
        let routes: serde_json::Map<String, Value> = local
            .iter()
            .map(|t| (t.group.clone().unwrap_or_else(|| "none".into()), json!(t.requests)))
            .collect();
        Ok(json!({
            "total": total.first().map(savings_line),
            "requests_by_route": routes,
            "per_day": days,
            "per_model_group": per_model.iter().map(|t| {
                let mut v = savings_line(t);
                v["model_group"] = json!(t.group);
                v
            }).collect::<Vec<_>>(),
        }))
    }
    .await)
}
