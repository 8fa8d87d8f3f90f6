//! The model price and context-window table shipped in the binary (built from LiteLLM's
//! `model_prices_and_context_window.json` by `scripts/update-prices.py`), parsed on first use.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Price {
    pub litellm_provider: Option<String>,
    pub mode: Option<String>,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub cache_read_input_token_cost: Option<f64>,
    pub cache_creation_input_token_cost: Option<f64>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
}

static TABLE: OnceLock<HashMap<String, Price>> = OnceLock::new();

fn table() -> &'static HashMap<String, Price> {
    TABLE.get_or_init(|| {
        serde_json::from_str(include_str!("model_prices.json")).unwrap_or_else(|e| {
            tracing::error!("the built-in price table is unreadable: {e}");
            HashMap::new()
        })
    })
}

/// Looks a model up by the names LiteLLM tries: as given, then without / with its provider.
pub fn lookup(model: &str, provider: &str) -> Option<&'static Price> {
    let t = table();
    t.get(model)
        .or_else(|| t.get(&format!("{provider}/{model}")))
        .or_else(|| model.split_once('/').and_then(|(_, rest)| t.get(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models() {
        let p = lookup("gpt-4o", "openai").unwrap();
        assert_eq!(p.input_cost_per_token, Some(2.5e-6));
        assert_eq!(p.max_input_tokens, Some(128000));
        assert!(lookup("claude-sonnet-4-5-20250929", "anthropic").is_some());
        assert!(lookup("no-such-model-xyz", "openai").is_none());
    }
}
