//! Reading YAML files and resolving `include:`.
//!
//! Paths in `include` are relative to the file that names them; includes may nest, and a file that
//! includes itself (directly or through others) is refused. Merging follows LiteLLM: a list that
//! exists in both is concatenated (so `model_list` entries add up), a map is merged key by key
//! (the included file's value wins on a clash, as in LiteLLM), anything else is replaced.

use super::ConfigError;
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// The merged document plus, for each `model_list` entry, the file it came from.
pub struct Source {
    pub root: Mapping,
    pub model_origins: Vec<PathBuf>,
}

pub fn load(path: &Path) -> Result<Source, Vec<ConfigError>> {
    let mut stack = Vec::new();
    let mut errors = Vec::new();
    let src = load_file(path, &mut stack, &mut errors);
    match src {
        Some(s) if errors.is_empty() => Ok(s),
        _ => Err(errors),
    }
}

fn load_file(path: &Path, stack: &mut Vec<PathBuf>, errors: &mut Vec<ConfigError>) -> Option<Source> {
    let display = path.to_path_buf();
    let canonical = match path.canonicalize() {
        Ok(p) => p,
        Err(e) => {
            errors.push(ConfigError::file(&display, format!("cannot read config file: {e}")));
            return None;
        }
    };
    if let Some(pos) = stack.iter().position(|p| p == &canonical) {
        let cycle: Vec<String> = stack[pos..]
            .iter()
            .chain(std::iter::once(&canonical))
            .map(|p| p.display().to_string())
            .collect();
        errors.push(ConfigError::file(
            &display,
            format!("include cycle: {}", cycle.join(" -> ")),
        ));
        return None;
    }
    let text = match std::fs::read_to_string(&canonical) {
        Ok(t) => t,
        Err(e) => {
            errors.push(ConfigError::file(&display, format!("cannot read config file: {e}")));
            return None;
        }
    };
    let value: Value = match serde_yaml::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            errors.push(ConfigError::file(&display, format!("invalid YAML: {e}")));
            return None;
        }
    };
    let mut root = match value {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        other => {
            errors.push(ConfigError::file(
                &display,
                format!("the top level must be a mapping of settings, found {}", kind(&other)),
            ));
            return None;
        }
    };
    let n_models = match root.get("model_list") {
        Some(Value::Sequence(s)) => s.len(),
        _ => 0,
    };
    let mut src = Source {
        model_origins: vec![display.clone(); n_models],
        root: Mapping::new(),
    };
    let includes = root.remove("include");
    src.root = root;

    let Some(includes) = includes else {
        return Some(src);
    };
    let list = match includes {
        Value::Sequence(s) => s,
        Value::String(s) => vec![Value::String(s)],
        Value::Null => vec![],
        other => {
            errors.push(ConfigError::at(
                &display,
                "include",
                format!("must be a list of file paths, found {}", kind(&other)),
            ));
            return Some(src);
        }
    };
    let base = canonical.parent().map(Path::to_path_buf).unwrap_or_default();
    stack.push(canonical);
    for (i, item) in list.into_iter().enumerate() {
        let Value::String(rel) = item else {
            errors.push(ConfigError::at(
                &display,
                &format!("include[{i}]"),
                "must be a file path",
            ));
            continue;
        };
        let child_path = base.join(&rel);
        if let Some(child) = load_file(&child_path, stack, errors) {
            merge(&mut src, child);
        }
    }
    stack.pop();
    Some(src)
}

fn merge(into: &mut Source, from: Source) {
    for (k, v) in from.root {
        let is_models = k.as_str() == Some("model_list");
        match (into.root.get_mut(&k), v) {
            (Some(Value::Sequence(a)), Value::Sequence(b)) => a.extend(b),
            (Some(Value::Mapping(a)), Value::Mapping(b)) => merge_map(a, b),
            (_, v) => {
                if is_models {
                    // Replacing a non-list model_list: the origins start over.
                    into.model_origins.clear();
                }
                into.root.insert(k, v);
            }
        }
    }
    into.model_origins.extend(from.model_origins);
}

fn merge_map(into: &mut Mapping, from: Mapping) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Mapping(a)), Value::Mapping(b)) => merge_map(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
