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
            s.write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
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

/// Every shipped config passes `switchyard check`, with no keys (cloud deployments disabled) and
/// with a dummy value for every key it references (then nothing may be left disabled).
#[test]
fn every_file_under_config_passes_check() {
    let keys = [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GROQ_API_KEY",
        "CEREBRAS_API_KEY",
        "GEMINI_API_KEY_1",
        "GEMINI_API_KEY_2",
        "OPENROUTER_API_KEY",
    ];
    let mut files: Vec<_> = std::fs::read_dir("config")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        for with_keys in [false, true] {
            let mut cmd = Command::new(BIN);
            clean_env(cmd.args(["check", "--config"]).arg(&f));
            for k in keys {
                cmd.env_remove(k);
                if with_keys {
                    cmd.env(k, format!("sk-dummy-{k}"));
                }
            }
            let out = cmd.output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{}: {err}", f.display());
            assert!(text.contains(": OK"), "{}: {text}", f.display());
            if with_keys {
                assert!(!text.contains("disabled deployments"), "{}: {text}", f.display());
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Kills the child when dropped, so a failed assertion leaves no process behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn check_gateway(url: &str, key: &str) -> (bool, String) {
    let out = Command::new("bash")
        .args(["scripts/check-gateway.sh", url, key])
        .env_remove("MODEL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// scripts/check-gateway.sh against the real binaries: all PASS with a live upstream; a FAIL line
/// and a non-zero exit once the upstream is gone.
#[test]
fn check_gateway_script_passes_then_fails_without_upstream() {
    let (mock_port, gw_port) = (free_port(), free_port());
    let mut mock = Child(
        Command::new(env!("CARGO_BIN_EXE_switchyard-mock"))
            .args(["--port", &mock_port.to_string(), "--name", "up"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_listening(mock_port), "mock did not start");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n  - model_name: chat\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: http://127.0.0.1:{mock_port}/v1\n      api_key: sk-up\ngeneral_settings:\n  disable_database: true\n"
        ),
    )
    .unwrap();
    let _gw = Child(
        clean_env(&mut Command::new(BIN))
            .args(["--config"])
            .arg(&cfg)
            .args(["--port", &gw_port.to_string()])
            .env("SWITCHYARD_MASTER_KEY", "sk-e2e-master")
            .env("SWITCHYARD_HOST", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_listening(gw_port), "gateway did not start");
    let url = format!("http://127.0.0.1:{gw_port}");

    let (ok, text) = check_gateway(&url, "sk-e2e-master");
    assert!(ok, "{text}");
    for name in ["health", "models", "chat", "stream"] {
        assert!(text.lines().any(|l| l == format!("PASS {name}")), "{name}: {text}");
    }
    assert!(!text.contains("FAIL"), "{text}");

    let (ok, text) = check_gateway(&url, "sk-wrong-key");
    assert!(!ok, "{text}");
    assert!(text.contains("FAIL models: HTTP 401"), "{text}");

    let _ = mock.0.kill();
    let _ = mock.0.wait();
    let (ok, text) = check_gateway(&url, "sk-e2e-master");
    assert!(!ok, "{text}");
    assert!(text.contains("PASS health"), "{text}");
    assert!(text.contains("FAIL chat: HTTP 502"), "{text}");
    assert!(text.contains("FAIL stream: HTTP 502"), "{text}");
}

/// The bare-metal installer, staged under DESTDIR: binary, config, a root-only env file with the
/// key, a systemd unit and the restart loop; it validates the config before anything else.
#[test]
fn install_script_stages_a_service() {
    let root = tempfile::tempdir().unwrap();
    let out = clean_env(&mut Command::new("bash"))
        .arg("scripts/install-baremetal.sh")
        .env("DESTDIR", root.path())
        .env("BINARY", BIN)
        .env("CONFIG", "config/rtx3090-ollama.yaml")
        .env("SWITCHYARD_MASTER_KEY", "sk-install-test")
        .env("OPENAI_API_KEY", "sk-openai-test")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("config checks out"), "{log}");
    let p = |rel: &str| root.path().join(rel);
    assert!(p("usr/local/bin/switchyard").exists());
    assert_eq!(
        std::fs::read_to_string(p("etc/switchyard/config.yaml")).unwrap(),
        std::fs::read_to_string("config/rtx3090-ollama.yaml").unwrap()
    );
    let env = std::fs::read_to_string(p("etc/switchyard/env")).unwrap();
    assert!(env.contains("SWITCHYARD_MASTER_KEY=sk-install-test\n"), "{env}");
    assert!(env.contains("OPENAI_API_KEY=sk-openai-test\n"), "{env}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p("etc/switchyard/env")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "env file is readable by others: {mode:o}");
    let unit = std::fs::read_to_string(p("etc/systemd/system/switchyard.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/switchyard --config /etc/switchyard/config.yaml --port 4000"));
    assert!(unit.contains("User=switchyard"));
    assert!(p("usr/local/bin/switchyard-supervise").exists());

    // A config that does not load stops the install before any service file is written.
    let bad = root.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "model_list:\n  - model_name: x\n    litellm_params: {model: nope/x}\n",
    )
    .unwrap();
    let root2 = tempfile::tempdir().unwrap();
    let out = clean_env(&mut Command::new("bash"))
        .arg("scripts/install-baremetal.sh")
        .env("DESTDIR", root2.path())
        .env("BINARY", BIN)
        .env("CONFIG", &bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the config does not load"));
    assert!(!root2.path().join("etc/systemd/system/switchyard.service").exists());
}
