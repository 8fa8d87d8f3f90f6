//! Configuration: a LiteLLM `config.yaml` read as written, turned into typed runtime settings.
//!
//! Load order: read files and resolve `include` ([`source`]) -> apply `environment_variables`
//! -> resolve `os.environ/` and `${VAR}` references ([`interpolate`]) -> read each section into
//! typed structs ([`deployment`], [`settings`]). Every error is collected with its file and path
//! and reported together; keys we accept but do not implement yet become warnings, once each.

pub mod alerting;
pub mod cache;
mod deployment;
mod fields;
pub mod interpolate;
pub mod server;
mod settings;
pub mod source;

pub use deployment::{concretize, Deployment, DisabledDeployment, Mode, ModelInfo, Wildcard};
pub use settings::{Alias, GeneralSettings, LitellmSettings, LocalFirstSettings, RouterSettings, Strategy};

use interpolate::{Env, ProcessEnv};
use serde_yaml::Value;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One problem in a config file, located by file and by key path.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub path: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            path: None,
            message: message.into(),
        }
    }

    pub fn at(file: &Path, path: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            path: Some(path.to_string()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}: {}", self.file.display(), p, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// All errors of one load, printable as one report.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "config has {n} error{}:", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The validated configuration the gateway runs on.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    /// Deployments that can serve traffic, in file order.
    pub deployments: Vec<Arc<Deployment>>,
    /// Deployments that loaded but cannot serve (missing key, provider not served), with why.
    pub disabled: Vec<DisabledDeployment>,
    /// Wildcard entries (`openai/*`, `*`), matched when no exact name or alias does.
    pub wildcards: Vec<Wildcard>,
    pub litellm: LitellmSettings,
    pub router: RouterSettings,
    pub general: GeneralSettings,
    /// Accepted-but-ignored keys and other notices, each to be logged once.
    pub warnings: Vec<String>,
}

impl Config {
    /// Loads `path` with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with_env(path, &ProcessEnv)
    }

    pub fn load_with_env(path: &Path, env: &dyn Env) -> Result<Config, ConfigErrors> {
        let src = source::load(path).map_err(ConfigErrors)?;
        let mut root = src.root;
        let mut errors: Vec<ConfigError> = Vec::new();
        let file_of = |p: &str| -> PathBuf {
            // model_list entries remember their file; everything else reports the main file.
            if let Some(rest) = p.strip_prefix("model_list[") {
                if let Some(i) = rest.split(']').next().and_then(|n| n.parse::<usize>().ok()) {
                    if let Some(f) = src.model_origins.get(i) {
                        return f.clone();
                    }
                }
            }
            path.to_path_buf()
        };

        // environment_variables first: their values may use os.environ/ too, and every later
        // reference sees them (layered over the process environment; the process is not mutated).
        let mut overlay: HashMap<String, String> = HashMap::new();
        if let Some(mut ev) = root.remove("environment_variables") {
            let mut errs = vec![];
            interpolate::interpolate(&mut ev, "environment_variables", env, &mut errs);
            errors.extend(errs.into_iter().map(|(p, m)| ConfigError::at(&file_of(&p), &p, m)));
            match ev {
                Value::Mapping(m) => {
                    for (k, v) in m {
                        if let (Some(k), Some(v)) = (fields::scalar_string(&k), fields::scalar_string(&v)) {
                            overlay.insert(k, v);
                        }
                    }
                }
                Value::Null => {}
                other => errors.push(ConfigError::at(
                    path,
                    "environment_variables",
                    format!("expected a mapping, found {}", source::kind(&other)),
                )),
            }
        }
        let env = Layered {
            overlay: &overlay,
            base: env,
        };

        let mut doc = Value::Mapping(root);
        let mut errs = vec![];
        interpolate::interpolate(&mut doc, "", &env, &mut errs);
        let Value::Mapping(mut root) = doc else {
            unreachable!("interpolation keeps the root a mapping")
        };

        let mut warnings = Vec::new();
        let section =
            |root: &mut serde_yaml::Mapping, key: &str, errs: &mut Vec<(String, String)>| match root.remove(key) {
                None | Some(Value::Null) => serde_yaml::Mapping::new(),
                Some(Value::Mapping(m)) => m,
                Some(other) => {
                    errs.push((
                        key.to_string(),
                        format!("expected a mapping, found {}", source::kind(&other)),
                    ));
                    serde_yaml::Mapping::new()
                }
            };
        let litellm_raw = section(&mut root, "litellm_settings", &mut errs);
        let router_raw = section(&mut root, "router_settings", &mut errs);
        let general_raw = section(&mut root, "general_settings", &mut errs);
        let litellm = settings::litellm(litellm_raw, &env, &mut errs, &mut warnings);
        let router = settings::router(router_raw, &litellm, &mut errs, &mut warnings);
        let general = settings::general(general_raw, &env, &mut errs, &mut warnings);

        let models = match root.remove("model_list") {
            None | Some(Value::Null) => vec![],
            Some(Value::Sequence(s)) => s,
            Some(other) => {
                errs.push((
                    "model_list".into(),
                    format!("expected a list of deployments, found {}", source::kind(&other)),
                ));
                vec![]
            }
        };
        let (deployments, disabled, wildcards) =
            deployment::resolve_all(models, &env, &litellm, &mut errs, &mut warnings, &file_of);

        for (k, _) in root {
            let key = fields::scalar_string(&k).unwrap_or_default();
            warnings.push(format!("{key}: accepted but not implemented; ignored"));
        }
        errors.extend(errs.into_iter().map(|(p, m)| ConfigError::at(&file_of(&p), &p, m)));
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            path: path.to_path_buf(),
            deployments,
            disabled,
            wildcards,
            litellm,
            router,
            general,
            warnings,
        })
    }
}

/// The config's own `environment_variables` over the real environment.
struct Layered<'a> {
    overlay: &'a HashMap<String, String>,
    base: &'a dyn Env,
}

impl Env for Layered<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.overlay.get(name).cloned().or_else(|| self.base.get(name))
    }
}

/// Shows the first and last few characters of a secret, as LiteLLM's `sk-...abcd`.
pub fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    if n <= 8 {
        return "****".into();
    }
    let head: String = secret.chars().take(3).collect();
    let tail: String = secret.chars().skip(n - 4).collect();
    format!("{head}...{tail}")
}
