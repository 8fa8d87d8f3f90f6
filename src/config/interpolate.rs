//! Environment references in config values, resolved once at load.
//!
//! Two spellings are understood anywhere a string appears:
//! - LiteLLM's `os.environ/NAME` as the whole value;
//! - `${NAME}` and `${NAME:-default}` inside a string (`$${` writes a literal `${`).
//!
//! A missing variable is an error at its path (all of them are reported together), except that
//! `${NAME:-}` with an empty default is an explicit "optional".

use serde_yaml::Value;

/// Looks a variable up; injectable so tests need not touch the process environment.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Replaces references in `value` in place; returns `(path, message)` for each failure.
pub fn interpolate(value: &mut Value, path: &str, env: &dyn Env, errors: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => match expand(s, env) {
            Ok(Some(new)) => *s = new,
            Ok(None) => {}
            Err(msg) => errors.push((path.to_string(), msg)),
        },
        Value::Sequence(seq) => {
            for (i, v) in seq.iter_mut().enumerate() {
                interpolate(v, &format!("{path}[{i}]"), env, errors);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                };
                let child = if path.is_empty() { key } else { format!("{path}.{key}") };
                interpolate(v, &child, env, errors);
            }
        }
        Value::Tagged(t) => interpolate(&mut t.value, path, env, errors),
        _ => {}
    }
}

/// Expands one string. `Ok(None)` means it had no references.
pub fn expand(s: &str, env: &dyn Env) -> Result<Option<String>, String> {
    if let Some(name) = s.trim().strip_prefix("os.environ/") {
        let name = name.trim();
        return match env.get(name) {
            Some(v) => Ok(Some(v)),
            None => Err(format!(
                "environment variable {name} is not set (referenced as os.environ/{name})"
            )),
        };
    }
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(t) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = t;
            continue;
        }
        let Some(body) = tail.strip_prefix("${") else {
            out.push('$');
            rest = &tail[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err(format!("unclosed `${{` in {s:?}"));
        };
        let inner = &body[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name {name:?} in {s:?}"));
        }
        match (env.get(name), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (referenced as ${{{name}}})"
                ))
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        HashMap::from([("A".to_string(), "1".to_string()), ("E".to_string(), String::new())])
    }

    #[test]
    fn forms() {
        let e = env();
        assert_eq!(expand("os.environ/A", &e).unwrap().as_deref(), Some("1"));
        assert_eq!(expand("x${A}y", &e).unwrap().as_deref(), Some("x1y"));
        assert_eq!(expand("${B:-zz}", &e).unwrap().as_deref(), Some("zz"));
        assert_eq!(expand("${E:-d}", &e).unwrap().as_deref(), Some("d"));
        assert_eq!(expand("${B:-}", &e).unwrap().as_deref(), Some(""));
        assert_eq!(expand("cost $5", &e).unwrap(), None);
        assert_eq!(expand("$${A}", &e).unwrap().as_deref(), Some("${A}"));
        assert_eq!(
            expand("os.environ/NOPE", &e).unwrap_err(),
            "environment variable NOPE is not set (referenced as os.environ/NOPE)"
        );
        assert!(expand("${A", &e).is_err());
    }

    #[test]
    fn reports_every_path() {
        let mut v: Value =
            serde_yaml::from_str("model_list:\n- litellm_params: {api_key: os.environ/X, api_base: '${Y}'}\n").unwrap();
        let mut errs = vec![];
        interpolate(&mut v, "", &env(), &mut errs);
        let paths: Vec<_> = errs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "model_list[0].litellm_params.api_key",
                "model_list[0].litellm_params.api_base"
            ]
        );
    }
}
