//! Where a request goes: model groups, aliases, and the choice of deployment inside a group.
//!
//! `plan` resolves the public model name to its group (exact name, then `model_group_alias`);
//! `balance` picks a deployment. Cooldowns, fallbacks and local-first routing plug in here.

pub mod balance;

use crate::config::{Config, Deployment, Mode};
use crate::error::GatewayError;
use crate::types::Endpoint;
use std::collections::HashMap;
use std::sync::Arc;

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
        ModelMap {
            groups,
            order,
            aliases,
            disabled,
        }
    }

    /// Public names a caller may use: groups in config order, then visible aliases.
    pub fn public_names(&self) -> Vec<String> {
        let mut names = self.order.clone();
        let mut aliases: Vec<&String> = self
            .aliases
            .iter()
            .filter(|(_, (target, hidden))| !hidden && self.groups.contains_key(target))
            .map(|(k, _)| k)
            .collect();
        aliases.sort();
        names.extend(
            aliases
                .into_iter()
                .filter(|a| !self.groups.contains_key(*a))
                .cloned(),
        );
        names
    }

    pub fn group(&self, name: &str) -> Option<&Arc<Group>> {
        self.groups.get(name).or_else(|| {
            let (target, _) = self.aliases.get(name)?;
            self.groups.get(target)
        })
    }

    /// Resolves a requested model for an endpoint, or says precisely why it cannot.
    pub fn resolve(&self, model: &str, endpoint: Endpoint) -> Result<&Arc<Group>, GatewayError> {
        if let Some(g) = self.group(model) {
            if endpoint == Endpoint::Chat
                && g.deployments.iter().all(|d| d.mode() == Mode::Completion)
            {
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
