//! Where a request goes: model groups, aliases, and the choice of deployment inside a group.
//!
//! `plan` resolves the public model name to its group (exact name, then `model_group_alias`);
//! `balance` picks a deployment. Cooldowns, fallbacks and local-first routing plug in here.

pub mod balance;
pub mod clock;
pub mod cooldown;
pub mod fallback;
pub mod health;
pub mod local_first;
pub mod report;
pub mod state;

use crate::config::{concretize, Config, Deployment, Mode, RouterSettings, Strategy, Wildcard};
use crate::error::GatewayError;
use crate::providers::spec::infer_provider;
use crate::types::Endpoint;
use balance::Candidate;
use clock::Clock;
use state::DeploymentState;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Deployments sharing a `model_name`.
#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub deployments: Vec<Arc<Deployment>>,
}

/// The routing table built from the config once at start-up; read-only on the hot path.
#[derive(Debug)]
pub struct ModelMap {
    groups: HashMap<String, Arc<Group>>,
    /// Group names in config order (for listings).
    order: Vec<String>,
    aliases: HashMap<String, (String, bool)>,
    /// Names whose every deployment is disabled, with the reasons.
    disabled: HashMap<String, Vec<String>>,
    /// Wildcard entries, most specific pattern first.
    wildcards: Vec<Wildcard>,
    /// Groups made from wildcards, by requested name (bounded; exact names never look here).
    made: RwLock<HashMap<String, Arc<Group>>>,
}

/// Most wildcard-made groups kept; past it the cache starts over.
const MAX_MADE_GROUPS: usize = 4096;

/// Matches `name` against a `*` pattern, returning what each `*` stood for.
fn glob(pattern: &str, name: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return (pattern == name).then(Vec::new);
    }
    let mut rest = name.strip_prefix(first)?;
    let mut caps = Vec::new();
    for mid in &parts[1..parts.len() - 1] {
        let at = rest.find(mid)?;
        caps.push(rest[..at].to_string());
        rest = &rest[at + mid.len()..];
    }
    if rest.len() < last.len() || !rest.ends_with(last) {
        return None;
    }
    caps.push(rest[..rest.len() - last.len()].to_string());
    Some(caps)
}

impl ModelMap {
    pub fn new(config: &Config) -> Self {
        let mut groups: HashMap<String, Vec<Arc<Deployment>>> = HashMap::new();
        let mut order = Vec::new();
        for d in &config.deployments {
            let e = groups.entry(d.model_name.clone()).or_default();
            if e.is_empty() {
                order.push(d.model_name.clone());
            }
            e.push(d.clone());
        }
        let mut disabled: HashMap<String, Vec<String>> = HashMap::new();
        for d in &config.disabled {
            if !groups.contains_key(&d.model_name) {
                disabled
                    .entry(d.model_name.clone())
                    .or_default()
                    .push(format!("model_list[{}] {}", d.index, d.reason));
            }
        }
        let aliases = config
            .router
            .model_group_alias
            .iter()
            .map(|(k, a)| (k.clone(), (a.target.clone(), a.hidden)))
            .collect();
        let groups = groups
            .into_iter()
            .map(|(name, deployments)| {
                let g = Group {
                    name: name.clone(),
                    deployments,
                };
                (name, Arc::new(g))
            })
            .collect();
        let mut wildcards = config.wildcards.clone();
        wildcards.sort_by_key(|w| std::cmp::Reverse(w.pattern.chars().filter(|c| *c != '*').count()));
        ModelMap {
            groups,
            order,
            aliases,
            disabled,
            wildcards,
            made: RwLock::new(HashMap::new()),
        }
    }

    /// Public names a caller may use: groups in config order, then visible aliases.
    pub fn public_names(&self) -> Vec<String> {
        let mut names = self.order.clone();
        let mut aliases: Vec<&String> = self
            .aliases
            .iter()
            .filter(|(k, (target, hidden))| !hidden && !k.contains('*') && self.groups.contains_key(target))
            .map(|(k, _)| k)
            .collect();
        aliases.sort();
        names.extend(aliases.into_iter().filter(|a| !self.groups.contains_key(*a)).cloned());
        names
    }

    /// The group for a name: exact, then alias, then the first matching wildcard.
    pub fn group(&self, name: &str) -> Option<Arc<Group>> {
        if let Some(g) = self.groups.get(name) {
            return Some(g.clone());
        }
        if let Some(g) = self.aliases.get(name).and_then(|(target, _)| self.groups.get(target)) {
            return Some(g.clone());
        }
        // Alias patterns (`claude-*: claude-code`) send a family of names to one group.
        let pattern_target = self
            .aliases
            .iter()
            .filter(|(k, _)| k.contains('*') && glob(k, name).is_some())
            .max_by_key(|(k, _)| k.len())
            .and_then(|(_, (target, _))| self.groups.get(target));
        if let Some(g) = pattern_target {
            return Some(g.clone());
        }
        if self.wildcards.is_empty() {
            return None;
        }
        if let Some(g) = self.made.read().ok().and_then(|m| m.get(name).cloned()) {
            return Some(g);
        }
        let g = Arc::new(self.make_from_wildcard(name)?);
        if let Ok(mut m) = self.made.write() {
            if m.len() >= MAX_MADE_GROUPS {
                m.clear();
            }
            m.insert(name.to_string(), g.clone());
        }
        Some(g)
    }

    fn make_from_wildcard(&self, name: &str) -> Option<Group> {
        for w in &self.wildcards {
            let Some(caps) = glob(&w.pattern, name) else {
                continue;
            };
            // The backend model: the pattern's model with each `*` replaced by what it matched
            // (a bare `*` model takes the whole requested name).
            let mut target = String::new();
            let mut caps_iter = caps.iter();
            let whole = name.to_string();
            for (i, part) in w.model_pattern.split('*').enumerate() {
                if i > 0 {
                    target.push_str(caps_iter.next().unwrap_or(&whole));
                }
                target.push_str(part);
            }
            if w.model_pattern == "*" {
                target = name.to_string();
            }
            let (prefix, upstream) = match target.split_once('/') {
                Some((p, rest)) if w.templates.iter().any(|t| t.provider.prefix() == p) => {
                    (p.to_string(), rest.to_string())
                }
                _ => (infer_provider(&target).unwrap_or("").to_string(), target.clone()),
            };
            let Some(t) = w.templates.iter().find(|t| t.provider.prefix() == prefix) else {
                continue;
            };
            let d = concretize(t, name, &upstream);
            return Some(Group {
                name: name.to_string(),
                deployments: vec![Arc::new(d)],
            });
        }
        None
    }

    /// Resolves a requested model for an endpoint, or says precisely why it cannot.
    pub fn resolve(&self, model: &str, endpoint: Endpoint) -> Result<Arc<Group>, GatewayError> {
        if let Some(g) = self.group(model) {
            if endpoint == Endpoint::Chat && g.deployments.iter().all(|d| d.mode() == Mode::Completion) {
                return Err(GatewayError::invalid_param(
                    "model",
                    format!("model={model} serves text completions only; call /v1/completions"),
                ));
            }
            return Ok(g);
        }
        if let Some(reasons) = self.disabled.get(model) {
            return Err(GatewayError::ModelUnavailable {
                model: model.to_string(),
                reason: reasons.join("; "),
            });
        }
        Err(GatewayError::UnknownModel {
            route: endpoint.route(),
            model: model.to_string(),
            available: self.public_names(),
        })
    }
}

/// Live routing state for every deployment, indexed by its `model_list` position.
#[derive(Debug)]
pub struct Router {
    pub clock: Arc<dyn Clock>,
    states: Vec<Arc<DeploymentState>>,
}

/// The deployments a request may go to now, and whether they are all untried.
pub struct Eligible<'a> {
    pub candidates: Vec<Candidate<'a>>,
    pub fresh: bool,
}

impl Router {
    pub fn new(config: &Config, clock: Arc<dyn Clock>) -> Self {
        let n = config
            .deployments
            .iter()
            .map(|d| d.index + 1)
            .chain(config.wildcards.iter().map(|w| w.index + 1))
            .max()
            .unwrap_or(0);
        Router {
            clock,
            states: (0..n).map(|_| Arc::new(DeploymentState::default())).collect(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn state(&self, dep: &Deployment) -> &Arc<DeploymentState> {
        &self.states[dep.index]
    }

    /// Filters a group down to what may serve this request now: not cooling (nor half-open with
    /// its probe out), healthy when any is,
    /// within its context window (with pre-call checks) and its rpm/tpm (for the strategies that
    /// respect them), untried if possible.
    pub fn eligible<'a>(
        &'a self,
        settings: &RouterSettings,
        group: &'a Group,
        tried: &[usize],
        est_tokens: u64,
    ) -> Result<Eligible<'a>, GatewayError> {
        let now = self.now_ms();
        let all: Vec<Candidate<'a>> = group.deployments.iter().map(|d| (d, self.state(d).as_ref())).collect();
        let mut live: Vec<Candidate<'a>> = all.iter().copied().filter(|(_, s)| s.is_available(now)).collect();
        if live.is_empty() {
            let soonest = all
                .iter()
                .map(|(_, s)| s.cooled_until_ms.load(std::sync::atomic::Ordering::Relaxed))
                .min()
                .unwrap_or(now);
            return Err(GatewayError::NoDeployments {
                model: group.name.clone(),
                retry_after: Duration::from_millis(soonest.saturating_sub(now)),
                cooldown_list: all.iter().map(|(d, _)| d.id.clone()).collect(),
            });
        }
        if live.iter().any(|(_, s)| s.is_healthy()) {
            live.retain(|(_, s)| s.is_healthy());
        }
        if settings.enable_pre_call_checks {
            let largest = live.iter().filter_map(|(d, _)| d.max_input_tokens()).max();
            live.retain(|(d, _)| d.max_input_tokens().is_none_or(|m| est_tokens <= m));
            if live.is_empty() {
                return Err(GatewayError::ContextWindowExceeded {
                    model: group.name.clone(),
                    tokens: est_tokens,
                    limit: largest.unwrap_or(0),
                });
            }
        }
        if matches!(settings.routing_strategy, Strategy::UsageBased | Strategy::LatencyBased) {
            let before = live.len();
            let mut wait_ms = u64::MAX;
            live.retain(|(d, s)| {
                let fits = d.rpm.is_none_or(|r| s.requests_last_minute(now) < r)
                    && d.tpm.is_none_or(|t| s.tokens_last_minute(now) + est_tokens <= t);
                if !fits {
                    wait_ms = wait_ms.min(s.limit_wait_ms(now, d.rpm, d.tpm, est_tokens));
                }
                fits
            });
            if live.is_empty() && before > 0 {
                return Err(GatewayError::NoDeployments {
                    model: group.name.clone(),
                    // When the first deployment's sliding window has room again, in whole
                    // seconds rounded up (Retry-After is in seconds).
                    retry_after: Duration::from_secs(wait_ms.clamp(1, 61_000).div_ceil(1000)),
                    cooldown_list: vec![],
                });
            }
        }
        let untried: Vec<Candidate<'a>> = live
            .iter()
            .copied()
            .filter(|(d, _)| !tried.contains(&d.index))
            .collect();
        Ok(if untried.is_empty() {
            Eligible {
                candidates: live,
                fresh: false,
            }
        } else {
            Eligible {
                candidates: untried,
                fresh: true,
            }
        })
    }
}
