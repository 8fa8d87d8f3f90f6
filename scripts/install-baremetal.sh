#!/usr/bin/env bash
# Installs switchyard on a rented box without Docker: the binary, a config, a service, the port.
#
#   sudo scripts/install-baremetal.sh                        # build from this checkout, serve config/switchyard.yaml
#   sudo CONFIG=config/rtx3090-ollama.yaml OPENAI_API_KEY=sk-... scripts/install-baremetal.sh
#   sudo BINARY=./switchyard scripts/install-baremetal.sh    # copy a binary built elsewhere
#
# Settings (environment): BINARY (skip the build), CONFIG (default config/switchyard.yaml),
# PORT (4000), SWITCHYARD_MASTER_KEY (generated when unset and printed once), DATABASE_URL,
# OPENAI_API_KEY / ANTHROPIC_API_KEY / ... (written to the service's env file when set),
# DESTDIR (write every file under this root and start nothing: for packaging and tests).
#
# The service runs under systemd when it is PID 1, else under a restart loop (containers rented
# as "servers" often have no systemd). Re-running keeps an existing config and env file.
set -euo pipefail
cd "$(dirname "$0")/.."

DESTDIR=${DESTDIR:-}
CONFIG=${CONFIG:-config/switchyard.yaml}
PORT=${PORT:-4000}
BIN_DIR=$DESTDIR/usr/local/bin
ETC=$DESTDIR/etc/switchyard
DATA=$DESTDIR/var/lib/switchyard
LOG=$DESTDIR/var/log/switchyard.log
KEY_VARS=(OPENAI_API_KEY ANTHROPIC_API_KEY GEMINI_API_KEY GROQ_API_KEY OPENROUTER_API_KEY
  DEEPSEEK_API_KEY MISTRAL_API_KEY CEREBRAS_API_KEY HF_TOKEN DATABASE_URL
  VLLM_MODEL VLLM_API_BASE OLLAMA_MODEL OLLAMA_API_BASE)

say() { echo "== $*"; }
die() {
  echo "error: $*" >&2
  exit 1
}

if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo), or set DESTDIR to stage the files"
fi
[ -f "$CONFIG" ] || die "config $CONFIG not found"

# 1. The binary: given, or built from this checkout (installing Rust when cargo is missing).
if [ -n "${BINARY:-}" ]; then
  [ -x "$BINARY" ] || die "BINARY=$BINARY is not an executable"
  src=$BINARY
else
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] || {
      say "installing Rust (rustup, minimal profile)"
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    }
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  say "building the release binary (several minutes)"
  cargo build --release --locked --bin switchyard
  src=target/release/switchyard
fi
mkdir -p "$BIN_DIR" "$ETC" "$DATA" "$(dirname "$LOG")"
install -m 0755 "$src" "$BIN_DIR/switchyard"
say "installed $BIN_DIR/switchyard"

# 2. Config and environment (secrets in a root-only file, never in the unit).
if [ -f "$ETC/config.yaml" ]; then
  say "keeping $ETC/config.yaml"
else
  install -m 0644 "$CONFIG" "$ETC/config.yaml"
  say "wrote $ETC/config.yaml (from $CONFIG)"
fi
if [ -f "$ETC/env" ]; then
  say "keeping $ETC/env"
else
  key=${SWITCHYARD_MASTER_KEY:-sk-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  umask 077
  {
    echo "SWITCHYARD_MASTER_KEY=$key"
    echo "PORT=$PORT"
    echo "SWITCHYARD_DB_PATH=/var/lib/switchyard/switchyard.db"
    for v in "${KEY_VARS[@]}"; do
      if [ -n "${!v:-}" ]; then echo "$v=${!v}"; fi
    done
  } >"$ETC/env"
  umask 022
  say "wrote $ETC/env (mode 600)"
  [ -n "${SWITCHYARD_MASTER_KEY:-}" ] || echo "   master key (the API key clients use): $key"
fi

# 3. Validate before starting anything.
set -a
# shellcheck disable=SC1091
. "$ETC/env"
set +a
"$BIN_DIR/switchyard" check --config "$ETC/config.yaml" >/dev/null || die "the config does not load; see above"
say "config checks out"

# 4. The service.
unit=$DESTDIR/etc/systemd/system/switchyard.service
mkdir -p "$(dirname "$unit")"
cat >"$unit" <<UNIT
[Unit]
Description=switchyard LLM gateway
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=/etc/switchyard/env
ExecStart=/usr/local/bin/switchyard --config /etc/switchyard/config.yaml --port $PORT
WorkingDirectory=/var/lib/switchyard
User=switchyard
Restart=always
RestartSec=2
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes

[Install]
WantedBy=multi-user.target
UNIT
supervisor=$BIN_DIR/switchyard-supervise
cat >"$supervisor" <<'LOOP'
#!/usr/bin/env bash
# Restarts switchyard when it exits (for boxes without systemd); logs to /var/log/switchyard.log.
set -a
. /etc/switchyard/env
set +a
cd /var/lib/switchyard
while true; do
  runuser -u switchyard -- /usr/local/bin/switchyard --config /etc/switchyard/config.yaml --port "$PORT"
  echo "switchyard exited with $?; restarting in 2 s" >&2
  sleep 2
done
LOOP
chmod 0755 "$supervisor"

if [ -n "$DESTDIR" ]; then
  say "staged under $DESTDIR; nothing started"
  exit 0
fi
# An unprivileged user owns the ledger; the gateway never needs root.
id switchyard >/dev/null 2>&1 || useradd --system --home-dir /var/lib/switchyard --shell /usr/sbin/nologin switchyard
chown switchyard: "$DATA"
if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
  systemctl daemon-reload
  systemctl enable --now switchyard
  systemctl restart switchyard
  say "running under systemd: journalctl -u switchyard -f"
else
  if [ -f /var/run/switchyard.pid ] && kill -0 "$(cat /var/run/switchyard.pid)" 2>/dev/null; then
    kill -- "-$(cat /var/run/switchyard.pid)" 2>/dev/null || kill "$(cat /var/run/switchyard.pid)"
  fi
  setsid nohup "$supervisor" >>"$LOG" 2>&1 </dev/null &
  echo $! >/var/run/switchyard.pid
  say "running under a restart loop (no systemd): tail -f $LOG; add $supervisor to the box's start-up"
fi

# 5. The port: open it in whichever firewall is active. Rented boxes often map it for you too.
if command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q 'Status: active'; then
  ufw allow "$PORT/tcp"
  say "opened $PORT/tcp in ufw"
elif command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
  firewall-cmd --permanent --add-port="$PORT/tcp" && firewall-cmd --reload
  say "opened $PORT/tcp in firewalld"
else
  say "no active firewall found; make sure the provider forwards port $PORT"
fi

say "check it: scripts/check-gateway.sh http://127.0.0.1:$PORT <master key>"
