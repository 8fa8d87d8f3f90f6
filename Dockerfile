# syntax=docker/dockerfile:1
# switchyard from this repository's sources: a Rust build stage, then a small Debian runtime.
#
#   docker build -t switchyard .
#   docker run -p 4000:4000 -e SWITCHYARD_MASTER_KEY=sk-... -v $PWD/config.yaml:/app/config.yaml:ro \
#     switchyard --config /app/config.yaml --port 4000
#
# The entrypoint is the binary and takes LiteLLM's flags, so a LiteLLM compose file's
# `command: --config /app/config.yaml --port 4000` works unchanged.

# rust:1 follows stable Rust; the lockfile pins every dependency.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The cache mounts keep the registry and compiled dependencies between builds; the binary is
# copied out of the cached target dir in the same step because the mount is not in the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard \
    && cp target/release/switchyard /usr/local/bin/switchyard

FROM debian:bookworm-slim
# curl is for the HEALTHCHECK only; TLS roots are compiled into the binary (rustls, webpki-roots).
# Unpinned: bookworm's security updates replace exact versions, which would break the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin switchyard \
    && mkdir -p /app/data \
    && chown 10001:10001 /app/data
COPY --from=build /usr/local/bin/switchyard /usr/local/bin/switchyard
# The default config serves the local engines on their usual ports; mount your own over it.
COPY config/switchyard.yaml /app/config.yaml
WORKDIR /app
# The SQLite ledger (keys, spend) goes to the writable data dir unless a database URL is set;
# mount a volume on /app/data to keep it across containers.
ENV CONFIG_FILE_PATH=/app/config.yaml \
    SWITCHYARD_DB_PATH=/app/data/switchyard.db \
    PORT=4000
VOLUME ["/app/data"]
USER 10001:10001
EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${PORT}/health/liveliness || exit 1"]
ENTRYPOINT ["switchyard"]
CMD ["--config", "/app/config.yaml", "--port", "4000"]
