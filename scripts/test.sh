#!/usr/bin/env bash
# The whole test suite, from a bare Debian 12 or 13 machine: installs what the build and the tests
# need (Debian packages; Rust with rustup when cargo is missing or older than the workspace needs),
# then shellcheck and the bootstrap tests for the scripts, the fake Kubernetes API server (a Python
# venv with kmock and kubernetes-validate) and its tests, the Helm chart's tests, formatting, lints
# and every test (unit, behaviour on loopback, schema checks, end-to-end in network namespaces).
#
#   scripts/test.sh                       # as root (CI): everything must run
#   SINEW_ALLOW_SKIP=1 scripts/test.sh    # without root: the end-to-end tests skip, and are listed
#
# An end-to-end test that cannot run (no root, a missing tool) fails unless SINEW_ALLOW_SKIP=1;
# either way the last lines say how many tests were skipped and why. Honours CARGO_TARGET_DIR,
# RUSTUP_TOOLCHAIN, and keeps to 2 build jobs (CARGO_BUILD_JOBS).
set -euo pipefail
SINEW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SINEW_WHO=test.sh
# shellcheck source-path=SCRIPTDIR source=lib/bootstrap.sh
. "$SINEW_ROOT/scripts/lib/bootstrap.sh"
cd "$SINEW_ROOT"

# Besides local mode's tools, the end-to-end tests drive tcpdump (capture on the bridge),
# python3 (test app) and prometheus (scraping a local mesh); shellcheck checks the scripts.
sinew_packages "${SINEW_LOCAL_MODE_TOOLS[@]}" "${SINEW_BUILD_TOOLS[@]}" tcpdump:tcpdump \
  python3:python3 shellcheck:shellcheck prometheus:prometheus
export PATH="$PATH:$SINEW_SBIN_PATH"

# The scripts first: seconds, and they are what brought this machine here.
shellcheck -x scripts/test.sh scripts/sinewctl scripts/lib/*.sh scripts/tests/*.sh .ci/run bench/*.sh
scripts/tests/bootstrap.sh

# The fake Kubernetes API server the control plane's end-to-end tests start (kmock in a venv of
# its own), then its own tests over HTTP: seconds. The same venv has kubernetes-validate, which
# the injector's schema test runs (SINEW_TEST_PYTHON).
sinew_py_venv
export SINEW_FAKE_APISERVER_PYTHON=$SINEW_PYTHON SINEW_TEST_PYTHON=$SINEW_PYTHON
"$SINEW_FAKE_APISERVER_PYTHON" control-plane/tests/support/test_fake_apiserver.py

# The Helm chart, with Helm 4's engine from the same venv (helm-python-sdk; there is no helm
# binary): lint --strict, template with default and other values, every object against the
# Kubernetes 1.33 schemas, the values schema, the injector webhook's selectors against the
# injection table: seconds.
"$SINEW_PYTHON" -m unittest discover -s charts/tests

# The tests need root, so under sudo cargo runs as root too (with the caller's toolchain).
export SINEW_CARGO_AS_CALLER=1
sinew_rust

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
SINEW_SKIP_REPORT=$(mktemp)
export SINEW_SKIP_REPORT
skip_summary() {
  local n
  n=$(wc -l <"$SINEW_SKIP_REPORT")
  echo "skipped: $n tests"
  sed 's/^/  /; s/\t/: /' "$SINEW_SKIP_REPORT"
  rm -f "$SINEW_SKIP_REPORT"
}
trap skip_summary EXIT
if [[ $(id -u) -ne 0 && ${SINEW_ALLOW_SKIP:-} != 1 ]]; then
  sinew_say "not root: the end-to-end tests will fail; run as root, or set SINEW_ALLOW_SKIP=1 to skip them"
fi

jobs=(-j "${CARGO_BUILD_JOBS:-2}")
sinew_say "checking and building the workspace with its tests, then running them (a first run" \
  "takes about 25 minutes on 2 cores, most of it building; later ones rebuild only what changed)"
sinew_cargo fmt --all -- --check
sinew_cargo clippy "${jobs[@]}" --workspace --all-targets -- -D warnings
# sinewctl alone: the control plane without its `kubernetes` feature, as sinewctl builds it (in
# the workspace run above, feature unification turns the feature on for everyone).
sinew_cargo clippy "${jobs[@]}" -p sinewctl --all-targets -- -D warnings
# The end-to-end tests run the real binaries (sinewctl finds the others next to itself). They are
# built with the tests' features (`--tests`: the dev-dependencies' features, tokio's test-util
# among them, are unified in), so `cargo test` below reuses every dependency instead of building
# tokio and the ~30 crates above it a second time (a cold run went from 29 m 18 s to 25 m 30 s).
sinew_cargo build "${jobs[@]}" --workspace --bins --tests
# Includes the fuzz targets (fuzz/targets, sinew-fuzz-targets): every kept input of fuzz/seeds,
# fuzz/regressions and fuzz/corpus, then a mutation run bounded by an iteration count per target
# (about 2 minutes on 2 cores; a failure prints SINEW_FUZZ_SEED=... to rerun it, and the input's
# path). SINEW_FUZZ_ITERATIONS=0 replays the kept inputs only.
sinew_cargo test "${jobs[@]}" --workspace
