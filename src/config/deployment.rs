//! `model_list` entries -> [`Deployment`]s ready to call.
//!
//! Everything a request needs is worked out here once: the provider, the upstream model id, the
//! normalised base URL and endpoint URLs, the auth header, the deterministic id. A deployment that
//! is well-formed but cannot be served (no key in the environment, a provider switchyard does not
//! call) loads as *disabled* with the reason, so a shared config still starts.

use super::fields::{scalar_string, yaml_to_json, Fields};
use super::interpolate::Env;
use super::settings::LitellmSettings;
use crate::providers::spec::{infer_provider, Provider, Wire, KNOWN_UNSERVED};
use http::{HeaderName, HeaderValue};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What kind of calls a deployment serves (`model_info.mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Chat,
    Completion,
    Embedding,
    Other(String),
}

#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    pub id: Option<String>,
    pub mode: Option<Mode>,
    pub base_model: Option<String>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub local: Option<bool>,
    /// Custom keys, returned as written by `/model/info`.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Per-deployment price overrides (USD), as LiteLLM's keys.
#[derive(Debug, Clone, Default)]
pub struct CostOverrides {
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub input_cost_per_second: Option<f64>,
    pub output_cost_per_second: Option<f64>,
    pub cache_read_input_token_cost: Option<f64>,
    pub cache_creation_input_token_cost: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    /// Position in the merged `model_list`.
    pub index: usize,
    pub id: String,
    /// The public name clients send (the model group).
    pub model_name: String,
    pub provider: Provider,
    /// `litellm_params.model` as written.
    pub litellm_model: String,
    /// The model id sent upstream.
    pub model: String,
    pub api_base: String,
    pub api_key: Option<String>,
    pub api_version: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub weight: Option<f64>,
    pub order: Option<i64>,
    pub timeout: Option<Duration>,
    pub stream_timeout: Option<Duration>,
    pub max_retries: Option<u64>,
    pub num_retries: Option<u64>,
    pub cooldown_time: Option<f64>,
    pub drop_params: bool,
    pub additional_drop_params: Vec<String>,
    /// LiteLLM's `mock_response`: answer with this text and call nothing.
    pub mock_response: Option<String>,
    pub costs: CostOverrides,
    /// Params forwarded upstream as defaults (a request's own value wins).
    pub defaults: serde_json::Map<String, serde_json::Value>,
    pub model_info: ModelInfo,
    pub source: PathBuf,
    // Worked out once at load for the hot path.
    pub chat_url: String,
    pub completions_url: String,
    pub embeddings_url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `is_local()`, worked out at load (it parses `api_base`).
    pub local: bool,
    /// Made from a wildcard entry for one requested model: never cooled down (as LiteLLM).
    pub wildcard: bool,
}

/// A `model_list` entry whose `model_name` or model has `*`: deployments are made per
/// requested name from its templates (one per provider it can reach).
#[derive(Debug, Clone)]
pub struct Wildcard {
    pub index: usize,
    /// The public pattern, e.g. `openai/*` or `*`.
    pub pattern: String,
    /// `litellm_params.model` as written, e.g. `openai/*`.
    pub model_pattern: String,
    pub templates: Vec<Arc<Deployment>>,
}

impl Deployment {
    /// How the deployment is named in errors and logs: never with its key.
    pub fn label(&self) -> String {
        format!("{} ({} at {})", self.model_name, self.litellm_model, self.api_base)
    }

    pub fn mode(&self) -> Mode {
        match &self.model_info.mode {
            Some(m) => m.clone(),
            None if self.provider == Provider::TextCompletionOpenAi => Mode::Completion,
            None => Mode::Chat,
        }
    }

    /// The built-in price/context entry for this deployment's model (`base_model` first).
    pub fn price(&self) -> Option<&'static crate::ledger::prices::Price> {
        let name = self.model_info.base_model.as_deref().unwrap_or(&self.model);
        crate::ledger::prices::lookup(name, self.provider.prefix())
    }

    /// The context window: `model_info.max_input_tokens`, else the price table's.
    pub fn max_input_tokens(&self) -> Option<u64> {
        self.model_info
            .max_input_tokens
            .or_else(|| self.price().and_then(|p| p.max_input_tokens))
    }

    /// USD per input and output token for cost-based routing: the overrides, else the table,
    /// else 0 for a local deployment, else LiteLLM's $1 for an unknown model.
    pub fn unit_cost(&self) -> f64 {
        let c = &self.costs;
        if c.input_cost_per_token.is_some() || c.output_cost_per_token.is_some() {
            return c.input_cost_per_token.unwrap_or(0.0) + c.output_cost_per_token.unwrap_or(0.0);
        }
        if let Some(p) = self.price().filter(|p| p.input_cost_per_token.is_some()) {
            return p.input_cost_per_token.unwrap_or(0.0) + p.output_cost_per_token.unwrap_or(0.0);
        }
        if self.is_local() {
            0.0
        } else {
            1.0
        }
    }

    /// Local = `model_info.local`, else an `api_base` on loopback, a private network, or a bare
    /// host name such as a compose service (`http://vllm:8000`).
    pub fn is_local(&self) -> bool {
        self.local
    }
}

pub fn is_local_base(base: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            d == "localhost"
                || d.ends_with(".localhost")
                || !d.contains('.')
                || d.ends_with(".local")
                || d.ends_with(".internal")
        }
        None => false,
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The Messages API version sent to Anthropic unless the client names one.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A deployment that loaded but is out of rotation.
#[derive(Debug, Clone)]
pub struct DisabledDeployment {
    pub index: usize,
    pub model_name: String,
    pub litellm_model: String,
    pub reason: String,
}

/// LiteLLM-only params: read by LiteLLM itself, never sent to the provider. Those switchyard does
/// not implement yet are warned about.
const NOT_FORWARDED: &[&str] = &[
    "litellm_credential_name",
    "use_in_pass_through",
    "configurable_clientside_auth_params",
    "merge_reasoning_content_in_choices",
    "region_name",
    "tags",
    "tag_regex",
    "base_model",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_region_name",
    "aws_session_token",
    "aws_role_name",
    "aws_profile_name",
    "aws_session_name",
    "aws_bedrock_runtime_endpoint",
    "vertex_project",
    "vertex_location",
    "vertex_credentials",
    "azure_ad_token",
    "tenant_id",
    "client_id",
    "client_secret",
    "azure_username",
    "azure_password",
    "watsonx_region_name",
    "max_budget",
    "budget_duration",
    "keepalive_seconds",
    "max_parallel_requests",
    "itpm",
    "otpm",
    "initial_prompt_value",
    "roles",
    "final_prompt_value",
    "bos_token",
    "eos_token",
    "allowed_openai_params",
    "model_info",
    "default_api_key_tpm_limit",
    "default_api_key_rpm_limit",
    "health_check_model",
    "litellm_trace_id",
];

pub fn resolve_all(
    models: Vec<Value>,
    env: &dyn Env,
    litellm: &LitellmSettings,
    errs: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
    file_of: &dyn Fn(&str) -> PathBuf,
) -> (Vec<Arc<Deployment>>, Vec<DisabledDeployment>, Vec<Wildcard>) {
    let mut ok = Vec::new();
    let mut disabled = Vec::new();
    let mut wildcards = Vec::new();
    let mut seen_ids = std::collections::HashMap::new();
    for (i, entry) in models.into_iter().enumerate() {
        let path = format!("model_list[{i}]");
        let Value::Mapping(map) = entry else {
            errs.push((path, "expected a mapping with model_name and litellm_params".into()));
            continue;
        };
        if let Some((pattern, model_pattern)) = wildcard_of(&map) {
            let bare = !model_pattern.contains('/');
            let variants: Vec<Mapping> = if bare {
                // `model: "*"`: one template per provider reachable with this environment.
                Provider::ALL
                    .iter()
                    .filter(|p| p.is_served())
                    .map(|p| with_model(&map, &format!("{}/*", p.prefix())))
                    .collect()
            } else {
                vec![map]
            };
            let mut templates = Vec::new();
            for v in variants {
                let (mut scratch_errs, mut scratch_warn) = (Vec::new(), Vec::new());
                let (e, w) = if bare {
                    (&mut scratch_errs, &mut scratch_warn)
                } else {
                    (&mut *errs, &mut *warnings)
                };
                if let Some(Ok(d)) = resolve(i, v, &path, env, litellm, e, w, file_of(&path)) {
                    templates.push(Arc::new(d));
                }
            }
            wildcards.push(Wildcard {
                index: i,
                pattern,
                model_pattern,
                templates,
            });
            continue;
        }
        match resolve(i, map, &path, env, litellm, errs, warnings, file_of(&path)) {
            Some(Ok(d)) => {
                if let Some(prev) = seen_ids.insert(d.id.clone(), i) {
                    errs.push((
                        format!("{path}.model_info.id"),
                        format!("id {:?} is already used by model_list[{prev}]", d.id),
                    ));
                }
                ok.push(Arc::new(d));
            }
            Some(Err(d)) => disabled.push(d),
            None => {}
        }
    }
    (ok, disabled, wildcards)
}

/// `(model_name, litellm_params.model)` when either has a `*`.
fn wildcard_of(map: &Mapping) -> Option<(String, String)> {
    let name = map.get("model_name").and_then(scalar_string)?;
    let model = map.get("litellm_params")?.get("model").and_then(scalar_string)?;
    (name.contains('*') || model.contains('*')).then_some((name, model))
}

fn with_model(map: &Mapping, model: &str) -> Mapping {
    let mut m = map.clone();
    if let Some(Value::Mapping(p)) = m.get_mut("litellm_params") {
        p.insert(Value::String("model".into()), Value::String(model.into()));
    }
    m
}

/// The concrete deployment of `template` for one requested name and upstream model id.
pub fn concretize(template: &Deployment, requested: &str, upstream_model: &str) -> Deployment {
    let mut d = template.clone();
    let star = format!("/deployments/{}/", template.model);
    let concrete = format!("/deployments/{upstream_model}/");
    for url in [&mut d.chat_url, &mut d.completions_url, &mut d.embeddings_url] {
        *url = url.replace(&star, &concrete);
    }
    d.model = upstream_model.to_string();
    d.litellm_model = format!("{}/{upstream_model}", template.provider.prefix());
    d.model_name = requested.to_string();
    let mut h = Sha256::new();
    h.update(template.id.as_bytes());
    h.update([0]);
    h.update(upstream_model.as_bytes());
    d.id = hex::encode(h.finalize());
    d.wildcard = true;
    d
}

#[allow(clippy::too_many_arguments)]
fn resolve(
    index: usize,
    map: Mapping,
    path: &str,
    env: &dyn Env,
    litellm: &LitellmSettings,
    errs: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
    source: PathBuf,
) -> Option<Result<Deployment, DisabledDeployment>> {
    let n_errs = errs.len();
    let mut entry = Fields::new(map, path, errs);
    let model_name = entry.string("model_name");
    if model_name.is_none() && entry.take("model_name").is_none() {
        entry.error("model_name", "is required: the public name clients send as `model`");
    }
    let params = entry.mapping("litellm_params");
    if params.is_none() {
        entry.error("litellm_params", "is required (with at least `model`)");
    }
    let info_map = entry.mapping("model_info").unwrap_or_default();
    let (unknown, _) = entry.rest();
    for p in unknown {
        warnings.push(format!("{p}: unknown deployment key; ignored"));
    }
    let model_info = model_info(info_map, &format!("{path}.model_info"), errs);
    let (model_name, params) = (model_name?, params?);

    let id_source = params.clone();
    let mut p = Fields::new(params, format!("{path}.litellm_params"), errs);
    let Some(litellm_model) = p.string("model") else {
        p.error(
            "model",
            "is required, e.g. openai/gpt-4o or hosted_vllm/Qwen/Qwen2.5-7B-Instruct",
        );
        return None;
    };
    let custom_provider = p.string("custom_llm_provider");

    // Provider: explicit custom_llm_provider, else the prefix, else inferred from the model id.
    let (provider_name, upstream_model) = match (&custom_provider, litellm_model.split_once('/')) {
        (Some(cp), _) => {
            let m = litellm_model
                .strip_prefix(&format!("{cp}/"))
                .unwrap_or(&litellm_model)
                .to_string();
            (cp.clone(), m)
        }
        (None, Some((prefix, rest))) => (prefix.to_string(), rest.to_string()),
        (None, None) if litellm_model == "*" => ("*".into(), "*".into()),
        (None, None) => match infer_provider(&litellm_model) {
            Some(pn) => (pn.to_string(), litellm_model.clone()),
            None => {
                p.error(
                    "model",
                    format!(
                        "cannot tell which provider serves {litellm_model:?}; write it with a provider prefix, e.g. openai/{litellm_model} for any OpenAI-compatible server"
                    ),
                );
                return None;
            }
        },
    };
    let provider = match Provider::from_prefix(&provider_name) {
        Some(pr) => pr,
        None if KNOWN_UNSERVED.contains(&provider_name.as_str()) => {
            return Some(Err(DisabledDeployment {
                index,
                model_name,
                litellm_model,
                reason: format!("provider {provider_name:?} is not supported by switchyard yet"),
            }));
        }
        None => {
            let known: Vec<&str> = Provider::ALL.iter().map(|p| p.prefix()).collect();
            let hint = known
                .iter()
                .find(|k| edit_distance(k, &provider_name) <= 2)
                .map(|k| format!(" (did you mean {k}/?)"))
                .unwrap_or_default();
            let key = if custom_provider.is_some() {
                "custom_llm_provider"
            } else {
                "model"
            };
            p.error(
                key,
                format!(
                    "unknown provider {provider_name:?} in {litellm_model:?}{hint}; known providers: {}",
                    known.join(", ")
                ),
            );
            return None;
        }
    };
    let spec = provider.spec();
    let wildcard = upstream_model.contains('*') || model_name.contains('*');

    // Base URL: as written, else the provider's env variable, else its public default.
    let explicit_base = p.string("api_base").filter(|s| !s.trim().is_empty());
    let has_explicit_base = explicit_base.is_some();
    let base = explicit_base
        .or_else(|| spec.base_env.iter().find_map(|v| env.get(v)).filter(|s| !s.is_empty()))
        .or_else(|| spec.default_base.map(str::to_string));
    // On a bad base the other fields are still read, so every error is reported at once.
    let api_base = match base {
        Some(b) => match normalise_base(&b, spec.ensure_v1) {
            Ok((norm, note)) => {
                if let Some(note) = note {
                    warnings.push(format!("{}: {note}", p.path_of("api_base")));
                }
                norm
            }
            Err(msg) => {
                p.error("api_base", msg);
                String::new()
            }
        },
        None => {
            let hint = spec
                .base_env
                .first()
                .map(|v| format!(" (or set {v})"))
                .unwrap_or_default();
            p.error(
                "api_base",
                format!("is required for {}/ deployments{hint}", spec.prefix),
            );
            String::new()
        }
    };

    let api_key = p
        .string("api_key")
        .or_else(|| spec.key_env.iter().find_map(|v| env.get(v)))
        .filter(|k| !k.is_empty());
    let api_version = p.string("api_version").or_else(|| {
        (provider == Provider::Azure)
            .then(|| env.get("AZURE_API_VERSION"))
            .flatten()
    });
    let rpm = p.u64("rpm");
    let tpm = p.u64("tpm");
    let weight = p.non_negative("weight");
    let order = p.i64("order");
    let timeout = p.seconds("timeout");
    let stream_timeout = p.seconds("stream_timeout");
    let max_retries = p.u64("max_retries");
    let num_retries = p.u64("num_retries");
    let cooldown_time = p.non_negative("cooldown_time");
    let drop_params = p.bool("drop_params").unwrap_or(litellm.drop_params);
    let additional_drop_params = p.string_list("additional_drop_params").unwrap_or_default();
    let mock_response = p.string("mock_response");
    let costs = CostOverrides {
        input_cost_per_token: p.non_negative("input_cost_per_token"),
        output_cost_per_token: p.non_negative("output_cost_per_token"),
        input_cost_per_second: p.non_negative("input_cost_per_second"),
        output_cost_per_second: p.non_negative("output_cost_per_second"),
        cache_read_input_token_cost: p.non_negative("cache_read_input_token_cost"),
        cache_creation_input_token_cost: p.non_negative("cache_creation_input_token_cost"),
    };
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let Some(org) = p.string("organization") {
        match HeaderValue::from_str(&org) {
            Ok(v) => headers.push((HeaderName::from_static("openai-organization"), v)),
            Err(_) => p.error("organization", "is not a valid header value"),
        }
    }
    for key in ["extra_headers", "headers"] {
        if let Some(m) = p.mapping(key) {
            for (k, v) in m {
                let (Some(k), Some(v)) = (scalar_string(&k), scalar_string(&v)) else {
                    continue;
                };
                match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                    (Ok(n), Ok(v)) => headers.push((n, v)),
                    _ => p.error(&format!("{key}.{k}"), "is not a valid HTTP header"),
                }
            }
        }
    }
    for k in NOT_FORWARDED {
        if p.take(k).is_some() {
            warnings.push(format!("{}: accepted but not implemented yet; ignored", p.path_of(k)));
        }
    }
    let (_, rest) = p.rest();
    let defaults: serde_json::Map<String, serde_json::Value> = rest
        .into_iter()
        .filter_map(|(k, v)| Some((scalar_string(&k)?, yaml_to_json(v))))
        .collect();

    if errs.len() > n_errs {
        return None;
    }
    if !provider.is_served() {
        return Some(Err(DisabledDeployment {
            index,
            model_name,
            litellm_model,
            reason: format!("provider {:?} is not served by this build yet", spec.prefix),
        }));
    }
    // A key is needed to reach the provider's public endpoint; a custom api_base (a local
    // server, a proxy) may not need one.
    if api_key.is_none() && spec.key_required && !has_explicit_base {
        let vars = spec.key_env.join(" or ");
        return Some(Err(DisabledDeployment {
            index,
            model_name,
            litellm_model,
            reason: format!("no API key: set {vars}, or litellm_params.api_key"),
        }));
    }

    let model = match provider {
        Provider::FireworksAi if !upstream_model.contains('/') => {
            format!("accounts/fireworks/models/{upstream_model}")
        }
        _ => upstream_model,
    };
    let (chat_url, completions_url, embeddings_url) = match spec.wire {
        Wire::Azure => {
            let v = api_version.clone().unwrap_or_else(|| "2024-10-21".into());
            let dep = format!("{api_base}/openai/deployments/{model}");
            (
                format!("{dep}/chat/completions?api-version={v}"),
                format!("{dep}/completions?api-version={v}"),
                format!("{dep}/embeddings?api-version={v}"),
            )
        }
        Wire::Anthropic => {
            // Accept the base with or without /v1, as people write both.
            let root = api_base.strip_suffix("/v1").unwrap_or(&api_base);
            let messages = format!("{root}/v1/messages");
            (messages.clone(), messages.clone(), messages)
        }
        _ => (
            format!("{api_base}/chat/completions"),
            format!("{api_base}/completions"),
            format!("{api_base}/embeddings"),
        ),
    };
    if spec.wire == Wire::Anthropic {
        headers.push((
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        ));
    }
    if let Some(key) = &api_key {
        let (name, value) = match spec.wire {
            Wire::Azure => (HeaderName::from_static("api-key"), key.clone()),
            Wire::Anthropic => (HeaderName::from_static("x-api-key"), key.clone()),
            _ => (http::header::AUTHORIZATION, format!("Bearer {key}")),
        };
        match HeaderValue::from_str(&value) {
            Ok(mut v) => {
                v.set_sensitive(true);
                headers.push((name, v));
            }
            Err(_) => {
                errs.push((
                    format!("{path}.litellm_params.api_key"),
                    "contains characters not allowed in an HTTP header".into(),
                ));
                return None;
            }
        }
    }
    let id = model_info
        .id
        .clone()
        .unwrap_or_else(|| stable_id(&model_name, &id_source));

    let local = model_info.local.unwrap_or_else(|| is_local_base(&api_base));
    Some(Ok(Deployment {
        index,
        id,
        model_name,
        provider,
        litellm_model,
        model,
        api_base,
        api_key,
        api_version,
        rpm,
        tpm,
        weight,
        order,
        timeout,
        stream_timeout,
        max_retries,
        num_retries,
        cooldown_time,
        drop_params,
        additional_drop_params,
        mock_response,
        costs,
        defaults,
        model_info,
        source,
        chat_url,
        completions_url,
        embeddings_url,
        headers,
        local,
        wildcard,
    }))
}

fn model_info(map: Mapping, path: &str, errs: &mut Vec<(String, String)>) -> ModelInfo {
    let mut f = Fields::new(map, path, errs);
    let id = f.string("id");
    let mode = f.string("mode").map(|m| match m.as_str() {
        "chat" => Mode::Chat,
        "completion" => Mode::Completion,
        "embedding" => Mode::Embedding,
        _ => Mode::Other(m),
    });
    let base_model = f.string("base_model");
    let max_input_tokens = f.u64("max_input_tokens");
    let max_output_tokens = f.u64("max_output_tokens");
    let local = f.bool("local");
    let (_, rest) = f.rest();
    let extra = rest
        .into_iter()
        .filter_map(|(k, v)| Some((scalar_string(&k)?, yaml_to_json(v))))
        .collect();
    ModelInfo {
        id,
        mode,
        base_model,
        max_input_tokens,
        max_output_tokens,
        local,
        extra,
    }
}

/// A stable id from the params as resolved, as LiteLLM hashes `litellm_params`: dashboards keyed
/// on it survive restarts. The key is part of it, so two keys for one model are two deployments.
fn stable_id(model_name: &str, params: &Mapping) -> String {
    let json = yaml_to_json(Value::Mapping(params.clone()));
    let mut h = Sha256::new();
    h.update(model_name.as_bytes());
    h.update([0]);
    h.update(json.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Cleans an `api_base`: checks it is an http(s) URL, drops a trailing slash and an endpoint path
/// pasted by mistake, and adds `/v1` for engines that serve the OpenAI API there.
fn normalise_base(raw: &str, ensure_v1: bool) -> Result<(String, Option<String>), String> {
    let trimmed = raw.trim();
    let url = reqwest::Url::parse(trimmed)
        .map_err(|e| format!("{trimmed:?} is not a valid URL ({e}); expected e.g. http://localhost:8000/v1"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{trimmed:?} must start with http:// or https://"));
    }
    if url.host().is_none() {
        return Err(format!("{trimmed:?} has no host"));
    }
    let mut base = trimmed.trim_end_matches('/').to_string();
    let mut note = None;
    for suffix in ["/chat/completions", "/completions", "/embeddings"] {
        if let Some(stripped) = base.strip_suffix(suffix) {
            note = Some(format!(
                "{trimmed:?} ends with the endpoint path {suffix}; using {stripped:?} as the base"
            ));
            base = stripped.to_string();
            break;
        }
    }
    if ensure_v1 && !base.ends_with("/v1") {
        base.push_str("/v1");
    }
    Ok((base, note))
}

/// Levenshtein distance, for "did you mean" hints on short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_normalisation() {
        assert_eq!(normalise_base("http://h:11434", true).unwrap().0, "http://h:11434/v1");
        assert_eq!(
            normalise_base("http://h:11434/v1/", true).unwrap().0,
            "http://h:11434/v1"
        );
        let (b, note) = normalise_base("http://h:8000/v1/chat/completions", false).unwrap();
        assert_eq!(b, "http://h:8000/v1");
        assert!(note.is_some());
        assert!(normalise_base("localhost:8000", false).is_err());
        assert!(normalise_base("ftp://x", false).is_err());
    }

    #[test]
    fn local_bases() {
        assert!(is_local_base("http://127.0.0.1:8000/v1"));
        assert!(is_local_base("http://localhost:11434/v1"));
        assert!(is_local_base("http://10.1.2.3/v1"));
        assert!(is_local_base("http://vllm:8000/v1"));
        assert!(!is_local_base("https://api.openai.com/v1"));
        assert!(!is_local_base("http://8.8.8.8/v1"));
    }
}
