//! The binary as a user runs it: `check`, the bind policy, and serving the default config.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn clean_env(cmd: &mut Command) -> &mut Command {
    for v in [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "LITELLM_MASTER_KEY",
        "SWITCHYARD_MASTER_KEY",
        "CONFIG_FILE_PATH",
        "PORT",
        "SWITCHYARD_HOST",
    ] {
        cmd.env_remove(v);
    }
    cmd
}

#[test]
fn check_prints_groups_with_masked_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: sk-verysecretkey-abcd\ngeneral_settings:\n  master_key: sk-master-secret-9876\n").unwrap();
    let out = clean_env(Command::new(BIN).args(["check", "--config"]).arg(&p))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("model groups (1):"), "{text}");
    assert!(text.contains("openai/gpt-4o"));
    assert!(text.contains("sk-...abcd"));
    assert!(text.contains("sk-...9876"));
    assert!(
        !text.contains("verysecret") && !text.contains("master-secret"),
        "{text}"
    );
}

#[test]
fn check_fails_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, "model_list:\n  - model_name: a\n    litellm_params: {model: nope/x}\n  - model_name: b\n    litellm_params: {model: openai/x, api_key: os.environ/MISSING_KEY_VAR}\n").unwrap();
    let out = clean_env(Command::new(BIN).args(["check", "--config"]).arg(&p))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("config has 2 errors:"), "{err}");
    assert!(err.contains("model_list[0].litellm_params.model: unknown provider \"nope\""));
    assert!(err.contains("model_list[1].litellm_params.api_key: environment variable MISSING_KEY_VAR is not set"));
}

#[test]
fn public_bind_without_master_key_is_refused() {
    let out =
        clean_env(Command::new(BIN).args(["--config", "config/switchyard.yaml", "--host", "0.0.0.0", "--port", "0"]))
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("refusing to listen on 0.0.0.0 without a master key"),
        "{err}"
    );
    assert!(err.contains("SWITCHYARD_MASTER_KEY"));
}

#[test]
fn serves_the_default_config_with_nothing_running() {
    // Pick a free port, then start the binary on it with the shipped config.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = clean_env(&mut Command::new(BIN))
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut ok = false;
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            ok = buf.starts_with("HTTP/1.1 200") && buf.contains("I'm alive!");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(ok, "gateway did not serve: {log}");
    assert!(log.contains("no master key set: listening on 127.0.0.1 only"), "{log}");
    assert!(log.contains("disabled: no API key: set OPENAI_API_KEY"), "{log}");
}

#[test]
fn check_names_the_database_and_disable_database_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    let base =
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: sk-x\n";
    let check = |yaml: String| {
        std::fs::write(&p, yaml).unwrap();
        let out = clean_env(Command::new(BIN).args(["check", "--config"]).arg(&p))
            .env_remove("DATABASE_URL")
            .env_remove("SWITCHYARD_DB_PATH")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(check(base.to_string()).contains("database: sqlite switchyard.db (default)"));
    let pg = check(format!(
        "{base}general_settings:\n  database_url: postgres://u:pw@db:5432/x\n"
    ));
    assert!(pg.contains("database: postgres postgres://u:****@db:5432/x"), "{pg}");
    let off = check(format!(
        "{base}general_settings:\n  database_url: postgres://u:pw@db:5432/x\n  disable_database: true\n"
    ));
    assert!(off.contains("database: none"), "{off}");
}
