# The `podium` binary in a small Debian image. Used by deploy/compose/compose.yaml; see deploy/README.md.
#   docker build -t podium .
# The build context is the repository (see .dockerignore): the demo app and the browser SDK (web/demo, web/dist)
# are embedded in the binary, so nothing but the binary goes into the runtime image.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The release profile keeps debug info for profiling (a ~150 MB binary); the image does without it. Panics still
# name their source location, and backtraces (RUST_BACKTRACE=1) their functions.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN cargo build --release --locked -p podium \
 && install -D -m 0755 target/release/podium /out/podium

# Same Debian release as the build stage, so the binary finds the glibc it was linked against.
FROM debian:${DEBIAN_RELEASE}-slim
# curl: for the container healthcheck (GET / on the websocket port; the hub answers plain HTTP there).
# ffmpeg: mixes recordings into replays ([recording] ffmpeg, used only with [recording] enabled).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin podium
COPY --from=build /out/podium /usr/local/bin/podium
USER podium
EXPOSE 7880
# SIGTERM drains (with Redis and another live hub, the rooms move there first); give it
# server.drain_timeout_ms + server.shutdown_grace_ms and some margin (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["podium"]
# Listen on every interface of the container. Media (UDP) needs [media] bind, port, workers and public_ip too:
# see deploy/compose/compose.yaml.
CMD ["serve", "--listen", "0.0.0.0:7880"]
