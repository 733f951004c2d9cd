# wafleet: one image, one binary (the supervisor re-executes itself as each account's worker).
#
#   docker build -t wafleet .
#   docker run -d --name wafleet -p 8080:8080 -v wafleet-data:/data \
#     -e ADMIN_TOKEN=change-me --stop-timeout 15 wafleet
#
# The build needs the network for crates.io only. The dependency layer below is rebuilt only
# when a manifest or Cargo.lock changes, so a source change recompiles the workspace crates
# alone. No BuildKit cache mounts: Railway (which builds a root Dockerfile when it finds one)
# refuses cache mounts whose id is not prefixed with its service id.

# The toolchain of `rust-version` in Cargo.toml (and .rust-version), on the runtime's Debian.
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build

# 1. Dependencies only: the workspace's manifests and lockfile, with empty crates (the
# `tests` member, wa-sim, stays empty: the supervisor does not depend on it).
COPY Cargo.toml Cargo.lock ./
COPY ipc-protocol/Cargo.toml ipc-protocol/
COPY supervisor/Cargo.toml supervisor/build.rs supervisor/
COPY volume/Cargo.toml volume/
COPY worker/Cargo.toml worker/
COPY tests/Cargo.toml tests/
RUN for crate in ipc-protocol supervisor volume worker tests; do \
        mkdir -p "$crate/src" && : > "$crate/src/lib.rs"; \
    done \
    && echo 'fn main() {}' > supervisor/src/main.rs \
    && cargo build --release --locked -p supervisor \
    && rm -rf ipc-protocol/src supervisor/src volume/src worker/src

# 2. The workspace itself. The sources are touched so that cargo never takes the empty
# crates' artifacts for theirs (COPY keeps the files' older modification times).
COPY ipc-protocol ipc-protocol
COPY supervisor supervisor
COPY volume volume
COPY worker worker
RUN find ipc-protocol supervisor volume worker -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p supervisor \
    && install -D -m 0755 target/release/supervisor /out/supervisor

# The runtime: Debian slim, glibc only (TLS is rustls with webpki roots: no OpenSSL, no CA
# bundle needed), a user of its own, the volume at /data.
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 wafleet \
    && useradd --system --uid 10001 --gid wafleet --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin wafleet \
    && mkdir -p /data \
    && chown wafleet:wafleet /data
COPY --from=builder /out/supervisor /usr/local/bin/supervisor

# Sessions go to $RAILWAY_VOLUME_MOUNT_PATH/sessions (here /data/sessions); on Railway the
# platform's own value (its volume's mount path) replaces this one. SESSIONS_PATH still wins
# over both when set.
ENV RAILWAY_VOLUME_MOUNT_PATH=/data \
    PORT=8080 \
    LOG_FORMAT=json
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080

# GET /health on 127.0.0.1:$PORT, 3 s deadline, no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["supervisor", "healthcheck"]

# The supervisor is PID 1: it handles SIGTERM itself (workers flush, then exit) within
# SHUTDOWN_TIMEOUT_MS (8 s by default). Give it longer before SIGKILL: `docker run
# --stop-timeout 15`, compose `stop_grace_period: 15s` (Docker's default is 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["supervisor"]
