# Sinew's images: one multi-stage file, a target per image (docs/install.md, "Images").
#
#   docker build --target proxy         -t ghcr.io/sinew-mesh/sinew-proxy:0.1.0 .
#   docker build --target control-plane -t ghcr.io/sinew-mesh/sinew-control-plane:0.1.0 .
#   docker build --target sinewctl      -t ghcr.io/sinew-mesh/sinewctl:0.1.0 .
#
# One file because the three binaries share one workspace, one lock file and one toolchain;
# with BuildKit a target builds only its own stages, so each image compiles only its binary.
# The binaries link glibc dynamically (ring and rustls need nothing else), so they are built on
# Debian 12 and run on Debian 12 based images with the same glibc.

ARG RUST_IMAGE=rust:1-bookworm

# The workspace, and nothing of a local build (.dockerignore leaves target/ out).
FROM ${RUST_IMAGE} AS source
WORKDIR /src
COPY . .

FROM source AS build-proxy
RUN cargo build --release --locked -p sinew-proxy --bin sinew-proxy

FROM source AS build-control-plane
RUN cargo build --release --locked -p sinew-control-plane --bin sinew-control-plane

FROM source AS build-sinewctl
RUN cargo build --release --locked -p sinewctl --bin sinewctl

# The sidecar, and its init step (`sinew-proxy init` installs the pod's iptables rules, so the
# image carries Debian's iptables: iptables-nft by default, iptables-legacy beside it). That
# needs a real userland (libnftnl, libmnl, xtables modules), hence Debian slim rather than
# distroless. ca-certificates: a DestinationRule with `tls.mode: SIMPLE` and no caCertificates
# verifies the server against /etc/ssl/certs/ca-certificates.crt. It runs as UID/GID 1337: the
# UID the interception rules exempt. The injected init container alone runs as root, set by its
# securityContext, not here. proxy/tests/image.rs checks this stage against the injector.
FROM debian:bookworm-slim AS proxy
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build-proxy /src/target/release/sinew-proxy /usr/local/bin/sinew-proxy
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/sinew-proxy"]
CMD ["run"]

# The control plane: distroless (glibc, CA certificates, no shell), as its `nonroot` user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS control-plane
COPY --from=build-control-plane /src/target/release/sinew-control-plane /usr/local/bin/sinew-control-plane
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sinew-control-plane"]
CMD ["serve"]

# sinewctl, for `kube-inject` in a pipeline (`docker run -i --rm IMAGE kube-inject -f - < app.yaml`).
# Local mode (`up`) needs root and network namespaces on the host: run it there, not in this image.
FROM gcr.io/distroless/cc-debian12:nonroot AS sinewctl
COPY --from=build-sinewctl /src/target/release/sinewctl /usr/local/bin/sinewctl
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sinewctl"]
