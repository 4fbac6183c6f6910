# The millrace-worker image: docker build -t millrace-worker .
# (compose.yaml builds it as the `worker` service.)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p millrace-worker --bin millrace-worker \
    && cp target/release/millrace-worker /usr/local/bin/millrace-worker

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 millrace
COPY --from=build /usr/local/bin/millrace-worker /usr/local/bin/millrace-worker
USER millrace
# /metrics, /healthz, /readyz
EXPOSE 9464
ENV MILLRACE_METRICS_ADDR=0.0.0.0 MILLRACE_METRICS_PORT=9464
# SIGTERM starts the graceful shutdown (grace 25 s by default): give the
# container a stop timeout above it (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/millrace-worker"]
