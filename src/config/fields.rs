//! Typed reads from a YAML mapping that record every error with its path instead of stopping.
//!
//! Values are read leniently where LiteLLM is lenient: numbers and booleans may be written as
//! strings (they often come from `os.environ/...`), and `True`/`False` are booleans.

use serde_yaml::{Mapping, Value};
use std::time::Duration;

pub struct Fields<'a> {
    map: Mapping,
    path: String,
    errors: &'a mut Vec<(String, String)>,
}

impl<'a> Fields<'a> {
    pub fn new(map: Mapping, path: impl Into<String>, errors: &'a mut Vec<(String, String)>) -> Self {
        Fields {
            map,
            path: path.into(),
            errors,
        }
    }

    pub fn errors_mut(&mut self) -> &mut Vec<(String, String)> {
        self.errors
    }

    pub fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn error(&mut self, key: &str, msg: impl Into<String>) {
        let p = self.path_of(key);
        self.errors.push((p, msg.into()));
    }

    /// Removes and returns the raw value (null counts as absent).
    pub fn take(&mut self, key: &str) -> Option<Value> {
        match self.map.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub fn string(&mut self, key: &str) -> Option<String> {
        let v = self.take(key)?;
        match scalar_string(&v) {
            Some(s) => Some(s),
            None => {
                self.error(key, format!("expected a string, found {}", super::source::kind(&v)));
                None
            }
        }
    }

    pub fn f64(&mut self, key: &str) -> Option<f64> {
        let v = self.take(key)?;
        let parsed = match &v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                self.error(key, format!("expected a number, found {}", describe(&v)));
                None
            }
        }
    }

    pub fn non_negative(&mut self, key: &str) -> Option<f64> {
        let x = self.f64(key)?;
        if x < 0.0 {
            self.error(key, format!("must not be negative, found {x}"));
            return None;
        }
        Some(x)
    }

    pub fn u64(&mut self, key: &str) -> Option<u64> {
        let v = self.take(key)?;
        let parsed = match &v {
            Value::Number(n) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64)),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(key, format!("expected a whole number >= 0, found {}", describe(&v)));
        }
        parsed
    }

    pub fn i64(&mut self, key: &str) -> Option<i64> {
        let v = self.take(key)?;
        let parsed = match &v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(key, format!("expected a whole number, found {}", describe(&v)));
        }
        parsed
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        let v = self.take(key)?;
        let parsed = match &v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Some(true),
                "false" | "no" | "0" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.error(key, format!("expected true or false, found {}", describe(&v)));
        }
        parsed
    }

    /// Seconds as a positive duration.
    pub fn seconds(&mut self, key: &str) -> Option<Duration> {
        let x = self.f64(key)?;
        if x <= 0.0 {
            self.error(key, format!("must be a positive number of seconds, found {x}"));
            return None;
        }
        Some(Duration::from_secs_f64(x))
    }

    pub fn string_list(&mut self, key: &str) -> Option<Vec<String>> {
        let v = self.take(key)?;
        match v {
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match scalar_string(item) {
                        Some(s) => out.push(s),
                        None => {
                            let p = format!("{}[{i}]", self.path_of(key));
                            self.errors.push((p, "expected a string".into()));
                        }
                    }
                }
                Some(out)
            }
            Value::String(s) => Some(vec![s]),
            other => {
                self.error(
                    key,
                    format!("expected a list of strings, found {}", super::source::kind(&other)),
                );
                None
            }
        }
    }

    pub fn mapping(&mut self, key: &str) -> Option<Mapping> {
        let v = self.take(key)?;
        match v {
            Value::Mapping(m) => Some(m),
            other => {
                self.error(
                    key,
                    format!("expected a mapping, found {}", super::source::kind(&other)),
                );
                None
            }
        }
    }

    /// The keys nobody read, with their full paths, plus what is left of the map.
    pub fn rest(self) -> (Vec<String>, Mapping) {
        let paths = self
            .map
            .keys()
            .map(|k| {
                let key = scalar_string(k).unwrap_or_else(|| "?".into());
                if self.path.is_empty() {
                    key
                } else {
                    format!("{}.{key}", self.path)
                }
            })
            .collect();
        (paths, self.map)
    }
}

pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => super::source::kind(other).to_string(),
    }
}

/// YAML to JSON for values forwarded upstream (YAML's extra types become strings).
pub fn yaml_to_json(v: Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::String(s) => serde_json::Value::String(s),
        Value::Sequence(s) => serde_json::Value::Array(s.into_iter().map(yaml_to_json).collect()),
        Value::Mapping(m) => serde_json::Value::Object(
            m.into_iter()
                .map(|(k, v)| (scalar_string(&k).unwrap_or_default(), yaml_to_json(v)))
                .collect(),
        ),
        Value::Tagged(t) => yaml_to_json(t.value),
    }
}
