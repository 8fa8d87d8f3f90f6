//! Which model groups to try after a group fails, as LiteLLM's `fallbacks` settings say.
//!
//! A context-window error uses `context_window_fallbacks`, a content-policy error
//! `content_policy_fallbacks`, each falling back to the generic `fallbacks`. For a group the
//! specific entry wins, then its name without a provider prefix, then the `"*"` entry, then
//! `default_fallbacks`. A request's own `fallbacks` list replaces all of these.

use crate::config::RouterSettings;
use crate::error::ErrorClass;

fn lookup<'a>(list: &'a [(String, Vec<String>)], group: &str) -> Option<&'a [String]> {
    let stripped = group.split_once('/').map(|(_, m)| m);
    list.iter()
        .find(|(g, _)| g == group)
        .or_else(|| stripped.and_then(|s| list.iter().find(|(g, _)| g == s)))
        .or_else(|| list.iter().find(|(g, _)| g == "*"))
        .map(|(_, t)| t.as_slice())
}

/// The fallback groups for `group` after an error of `class`.
pub fn targets(settings: &RouterSettings, group: &str, class: ErrorClass) -> Vec<String> {
    let specific = match class {
        ErrorClass::ContextWindowExceeded => lookup(&settings.context_window_fallbacks, group),
        ErrorClass::ContentPolicyViolation => lookup(&settings.content_policy_fallbacks, group),
        _ => None,
    };
    specific
        .or_else(|| lookup(&settings.fallbacks, group))
        .map(<[String]>::to_vec)
        .unwrap_or_else(|| settings.default_fallbacks.clone())
}

/// Whether a specific fallback list exists for this error class (retries are then skipped).
pub fn has_specific(settings: &RouterSettings, group: &str, class: ErrorClass) -> bool {
    match class {
        ErrorClass::ContextWindowExceeded => lookup(&settings.context_window_fallbacks, group).is_some(),
        ErrorClass::ContentPolicyViolation => lookup(&settings.content_policy_fallbacks, group).is_some(),
        _ => false,
    }
}
