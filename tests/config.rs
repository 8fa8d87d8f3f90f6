//! Config loading: the shipped examples, the seed articles' configs, and exact error messages.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use switchyard::config::Config;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            // A folder holds a config.yaml with its includes.
            let main = p.join("config.yaml");
            if main.exists() {
                out.push(main);
            }
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn every_shipped_config_loads_without_any_environment() {
    let files = yaml_files(Path::new("config"));
    assert!(!files.is_empty());
    for f in files {
        let c = Config::load_with_env(&f, &env(&[])).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(
            !c.deployments.is_empty() || !c.disabled.is_empty(),
            "{} lists no models",
            f.display()
        );
    }
}

#[test]
fn default_config_serves_local_engines_and_cloud_only_with_keys() {
    let path = Path::new("config/switchyard.yaml");
    let c = Config::load_with_env(path, &env(&[])).unwrap();
    assert!(c.deployments.iter().all(|d| d.is_local()));
    assert!(c
        .disabled
        .iter()
        .any(|d| d.model_name == "gpt-4o" && d.reason.contains("OPENAI_API_KEY")));
    let c = Config::load_with_env(path, &env(&[("OPENAI_API_KEY", "sk-test"), ("VLLM_MODEL", "my/model")])).unwrap();
    assert!(c.deployments.iter().any(|d| d.model_name == "gpt-4o" && !d.is_local()));
    assert!(c.deployments.iter().any(|d| d.model == "my/model"));
}

/// Every config from the seed articles loads, or fails only on missing environment variables,
/// and then loads once those are set.
#[test]
fn seed_configs_load_or_fail_only_on_missing_env() {
    let files = yaml_files(Path::new("tests/fixtures/seeds"));
    assert!(
        files.len() >= 10,
        "expected the extracted seed configs, found {}",
        files.len()
    );
    for f in files {
        let mut vars: Vec<(String, String)> = vec![];
        match Config::load_with_env(&f, &env(&[])) {
            Ok(_) => continue,
            Err(errs) => {
                for e in &errs.0 {
                    let Some(rest) = e.message.strip_prefix("environment variable ") else {
                        panic!("{}: fails on more than a missing variable: {e}", f.display());
                    };
                    let name = rest.split(' ').next().unwrap().to_string();
                    assert!(e.message.contains("is not set (referenced as os.environ/"), "{e}");
                    vars.push((name, "value-from-test".into()));
                }
            }
        }
        let env: HashMap<String, String> = vars.into_iter().collect();
        Config::load_with_env(&f, &env).unwrap_or_else(|e| panic!("{} with its variables set: {e}", f.display()));
    }
}

#[test]
fn seed_with_includes_merges_models_and_router_settings() {
    let c = Config::load_with_env(
        Path::new("tests/fixtures/seeds/000_1/config.yaml"),
        &env(&[("GEMINI_API_KEY", "g")]),
    )
    .unwrap();
    assert_eq!(c.deployments.len(), 1);
    assert_eq!(c.litellm.num_retries, 3);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("router_settings.model_groups:")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn exact_message_for_bad_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.yaml",
        "model_list:\n  - model_name: a\n   litellm_params: x\n",
    );
    let e = Config::load_with_env(&p, &env(&[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "config has 1 error:\n  - {}: invalid YAML: did not find expected '-' indicator at line 3 column 4, while parsing a block collection at line 2 column 3\n",
            p.display()
        )
    );
}

#[test]
fn exact_message_for_missing_env_var() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "c.yaml", "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: os.environ/MY_OPENAI_KEY\n");
    let e = Config::load_with_env(&p, &env(&[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "config has 1 error:\n  - {}: model_list[0].litellm_params.api_key: environment variable MY_OPENAI_KEY is not set (referenced as os.environ/MY_OPENAI_KEY)\n",
            p.display()
        )
    );
    let ok = Config::load_with_env(&p, &env(&[("MY_OPENAI_KEY", "sk-1")])).unwrap();
    assert_eq!(ok.deployments[0].api_key.as_deref(), Some("sk-1"));
}

#[test]
fn exact_message_for_include_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yaml", "include: [sub/b.yaml]\n");
    write(dir.path(), "sub/b.yaml", "include:\n  - ../a.yaml\n");
    let e = Config::load_with_env(&a, &env(&[])).unwrap_err();
    let root = dir.path().canonicalize().unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "config has 1 error:\n  - {}: include cycle: {} -> {} -> {}\n",
            root.join("sub/../a.yaml").display(),
            root.join("a.yaml").display(),
            root.join("sub/b.yaml").display(),
            root.join("a.yaml").display()
        )
    );
}

#[test]
fn exact_message_for_bad_provider_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.yaml",
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: opanai/gpt-4o\n",
    );
    let e = Config::load_with_env(&p, &env(&[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "config has 1 error:\n  - {}: model_list[0].litellm_params.model: unknown provider \"opanai\" in \"opanai/gpt-4o\" (did you mean openai/?); known providers: openai, azure, azure_ai, hosted_vllm, text-completion-openai, ollama, ollama_chat, huggingface, gemini, deepseek, groq, mistral, together_ai, openrouter, fireworks_ai, xai, dashscope, lm_studio, llamafile, nvidia_nim, cerebras, perplexity, litellm_proxy, anthropic\n",
            p.display()
        )
    );
}

#[test]
fn all_errors_are_reported_at_once_with_file_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.yaml",
        "include: [models.yaml]\nmodel_list:\n  - model_name: ok\n    litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:1/v1'}\nrouter_settings:\n  num_retries: many\n",
    );
    write(
        dir.path(),
        "models.yaml",
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: hosted_vllm/q\n      timeout: soon\n  - litellm_params: {model: openai/y}\n",
    );
    let e = Config::load_with_env(&main, &env(&[])).unwrap_err();
    let lines: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
    let models = dir.path().canonicalize().unwrap().join("models.yaml");
    let expect = [
        format!("{}: router_settings.num_retries: expected a whole number >= 0, found \"many\"", main.display()),
        format!("{}: model_list[1].litellm_params.api_base: is required for hosted_vllm/ deployments (or set HOSTED_VLLM_API_BASE)", models.display()),
        format!("{}: model_list[1].litellm_params.timeout: expected a number, found \"soon\"", models.display()),
        format!("{}: model_list[2].model_name: is required: the public name clients send as `model`", models.display()),
    ];
    for x in &expect {
        assert!(lines.contains(x), "missing {x:?} in {lines:#?}");
    }
    assert_eq!(lines.len(), expect.len(), "{lines:#?}");
}

#[test]
fn interpolation_env_section_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.yaml",
        "environment_variables:\n  LOCAL_BASE: http://127.0.0.1:8000\nmodel_list:\n  - model_name: a\n    litellm_params:\n      model: hosted_vllm/${MODEL_ID:-Qwen/Qwen2.5-7B}\n      api_base: ${LOCAL_BASE}\n      rpm: os.environ/RPM\n      temperature: 0.3\n      tags: [x]\nlitellm_settings:\n  drop_params: True\n  success_callback: [langfuse]\ngeneral_settings:\n  master_key: sk-1234\n  database_url: postgres://x\n  store_model_in_db: true\nguardrails: []\n",
    );
    let c = Config::load_with_env(&p, &env(&[("RPM", "60")])).unwrap();
    let d = &c.deployments[0];
    assert_eq!(d.model, "Qwen/Qwen2.5-7B");
    assert_eq!(d.api_base, "http://127.0.0.1:8000/v1");
    assert_eq!(d.rpm, Some(60));
    assert!(d.drop_params);
    assert_eq!(d.defaults["temperature"], 0.3);
    assert!(!d.defaults.contains_key("tags"));
    assert_eq!(c.general.master_key.as_deref(), Some("sk-1234"));
    assert_eq!(
        c.general.database,
        Some(switchyard::store::Database::Postgres("postgres://x".into()))
    );
    for w in [
        "model_list[0].litellm_params.tags: accepted but not implemented yet; ignored",
        "litellm_settings.success_callback: callback \"langfuse\" is not supported (only http(s) URLs and \"generic\"); ignored",
        "general_settings.store_model_in_db: accepted but not implemented yet; ignored",
        "guardrails: accepted but not implemented; ignored",
    ] {
        assert!(
            c.warnings.iter().any(|x| x == w),
            "missing warning {w:?} in {:#?}",
            c.warnings
        );
    }
}

#[test]
fn deployment_ids_are_stable_and_overridable() {
    let dir = tempfile::tempdir().unwrap();
    let text = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:1/v1', api_key: KEY}\n  - model_name: b\n    litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:1/v1'}\n    model_info: {id: my-id}\n";
    let p = write(dir.path(), "c.yaml", text);
    let one = Config::load_with_env(&p, &env(&[])).unwrap();
    let p2 = write(dir.path(), "d.yaml", &text.replace("KEY", "OTHER"));
    let two = Config::load_with_env(&p2, &env(&[])).unwrap();
    let again = Config::load_with_env(&p, &env(&[])).unwrap();
    assert_eq!(
        one.deployments[0].id, again.deployments[0].id,
        "the same config gives the same id"
    );
    assert_ne!(
        one.deployments[0].id, two.deployments[0].id,
        "two keys for one model are two deployments"
    );
    assert_eq!(one.deployments[1].id, "my-id");
}

#[test]
fn unprefixed_models_are_inferred_like_litellm() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.yaml",
        "model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o, api_key: k}\n  - model_name: b\n    litellm_params: {model: anthropic.claude-3-haiku, api_key: k}\n  - model_name: c\n    litellm_params: {model: mystery-model}\n",
    );
    let e = Config::load_with_env(&p, &env(&[])).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(e.0[0]
        .message
        .contains("cannot tell which provider serves \"mystery-model\""));
    let p = write(dir.path(), "c.yaml", "model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o, api_key: k}\n  - model_name: b\n    litellm_params: {model: anthropic.claude-3-haiku, api_key: k}\n");
    let c = Config::load_with_env(&p, &env(&[])).unwrap();
    assert_eq!(c.deployments[0].provider.prefix(), "openai");
    assert!(c.disabled[0].reason.contains("\"bedrock\""));
}
