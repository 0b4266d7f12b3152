# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/sinewctl: take a bare Debian 12 or 13 machine to one that
# can build and run Sinew. Sourced, not run; defines functions only.
#
# Promises:
# - sinew_packages installs (apt, as root or through sudo) the Debian packages whose tools are
#   missing, or stops with one line naming the packages and why it could not install them;
# - sinew_rust finds a cargo at least as new as the workspace's `rust-version` (also the invoking
#   user's ~/.cargo/bin under sudo) and downloads nothing when there is one; otherwise it says what
#   it is about to download, installs with rustup, and checks the result. RUSTUP_TOOLCHAIN or a
#   rust-toolchain.toml pins the toolchain rustup installs; the user's default toolchain is never
#   changed;
# - sinew_cargo runs cargo as the user who owns the toolchain (the sudo caller, so no root-owned
#   files land in their checkout) with that toolchain first on PATH;
# - sinew_py_venv gives a Python venv with the pinned test tools (SINEW_PY_TOOLS), made once and
#   then reused without a network or pip call.
#
# Callers set SINEW_WHO (the prefix of every message) and SINEW_ROOT (the checkout). Tests
# (scripts/tests/bootstrap.sh) run these functions against a PATH of stubs. SINEW_RUSTUP_URL
# replaces https://sh.rustup.rs (a mirror; README); SINEW_SBIN_PATH exists for those tests.

SINEW_WHO=${SINEW_WHO:-sinew}
# A non-login root shell often lacks the sbin directories, where iptables and ip live.
SINEW_SBIN_PATH=${SINEW_SBIN_PATH-/usr/local/sbin:/usr/sbin:/sbin}
SINEW_RUSTUP_URL=${SINEW_RUSTUP_URL:-https://sh.rustup.rs}
# A clean debug build of the four binaries here; measured, see docs/benchmarks.md ("First build").
SINEW_FIRST_BUILD="10 minutes"

sinew_say() { echo "$SINEW_WHO: $*" >&2; }
sinew_die() { sinew_say "$*"; exit 1; }

# `tool:package` pairs; every local-mode run needs these (scripts/sinewctl, and the e2e tests).
# shellcheck disable=SC2034  # used by the scripts that source this file
SINEW_LOCAL_MODE_TOOLS=(ip:iproute2 iptables:iptables iptables-restore:iptables setpriv:util-linux
  sysctl:procps curl:curl)
# Building: ring's C code needs cc, libfuzzer-sys (fuzz/) needs c++; rustup's download needs curl.
# shellcheck disable=SC2034
SINEW_BUILD_TOOLS=(cc:build-essential c++:build-essential make:build-essential
  pkg-config:pkg-config curl:curl)

# Installs the packages of the `tool:package` pairs whose tool is not found. ca-certificates comes
# along so curl can check TLS on a minimal image.
sinew_packages() {
  local pair need=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 \
      || PATH="$PATH${SINEW_SBIN_PATH:+:$SINEW_SBIN_PATH}" command -v "${pair%%:*}" >/dev/null 2>&1 \
      || [[ " ${need[*]} " == *" ${pair#*:} "* ]] \
      || need+=("${pair#*:}")
  done
  ((${#need[@]})) || return 0
  sinew_apt_install "${need[@]}"
}

# Installs Debian packages with apt-get (as root, or through sudo), or stops with one line naming
# them and why they could not be installed.
sinew_apt_install() {
  local need=("$@") as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 \
      || sinew_die "needs the Debian packages ${need[*]}; run as root, or install sudo, or install them yourself"
    as_root=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 \
    || sinew_die "needs ${need[*]} (Debian package names) and there is no apt-get here; install them yourself"
  sinew_say "installing Debian packages: ${need[*]}"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    ca-certificates "${need[@]}" >/dev/null
}

# Python tools the tests run, pinned: a new version is a change reviewed like any other. Their
# own dependencies float, except those our test code imports itself.
# - the fake Kubernetes API server (control-plane/tests/support/): kmock, aiohttp, jsonpatch;
# - the injector's schema test (injector-webhook/tests/schema.rs): kubernetes-validate;
# - the chart's tests (charts/tests/): helm-python-sdk (Helm 4's engine for lint and template,
#   no helm binary), kubernetes-validate (Kubernetes' OpenAPI schemas), PyYAML, and
#   common-expression-language (CEL, for the webhook's matchConditions).
SINEW_PY_TOOLS=(kmock==0.8 aiohttp==3.14.5 jsonpatch==1.48
  helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4 common-expression-language==0.10.0)

# Sets SINEW_PYTHON to the python of a venv holding SINEW_PY_TOOLS: $SINEW_PY_VENV, default
# ${CARGO_TARGET_DIR:-$SINEW_ROOT/target}/py-venv. Runs nothing but a file test when the venv
# already has them (a stamp file lists what was installed); otherwise creates the venv (with the
# Debian package python3-venv when python3 lacks it) and installs them with pip from PyPI
# (PIP_INDEX_URL names a mirror), saying so first.
sinew_py_venv() {
  local venv=${SINEW_PY_VENV:-${CARGO_TARGET_DIR:-$SINEW_ROOT/target}/py-venv}
  local stamp=$venv/.sinew-py-tools want="${SINEW_PY_TOOLS[*]}"
  if [[ -x $venv/bin/python && -f $stamp && $(<"$stamp") == "$want" ]]; then
    # shellcheck disable=SC2034  # read by the scripts that source this file
    SINEW_PYTHON=$venv/bin/python
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || sinew_apt_install python3
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || sinew_die "$want needs Python 3.11 or newer; python3 is $(python3 -V 2>&1)"
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || sinew_apt_install python3-venv
  sinew_say "installing $want into $venv (pip, from PyPI; once)"
  python3 -m venv --clear "$venv" || sinew_die "python3 -m venv could not create $venv (see above)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${SINEW_PY_TOOLS[@]}" \
    || sinew_die "pip could not install $want into $venv (no internet? PIP_INDEX_URL names a mirror)"
  echo "$want" >"$stamp"
  # shellcheck disable=SC2034
  SINEW_PYTHON=$venv/bin/python
}

# The invoking user under sudo (builds and rustup run as them), or empty.
sinew_build_user() {
  if [[ -n ${SUDO_USER:-} && $SUDO_USER != root && $(id -u) -eq 0 ]]; then echo "$SUDO_USER"; fi
}

# The home directory of the user whose toolchain we use.
sinew_build_home() {
  local user
  user=$(sinew_build_user)
  if [[ -n $user ]]; then getent passwd "$user" | cut -d: -f6; else echo "$HOME"; fi
}

# The oldest Rust the workspace builds with (`rust-version` in Cargo.toml), e.g. 1.88.
sinew_min_rust() {
  sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$SINEW_ROOT/Cargo.toml" | head -n 1
}

# The toolchain pinned by RUSTUP_TOOLCHAIN or rust-toolchain(.toml), or empty.
sinew_pinned_toolchain() {
  if [[ -n ${RUSTUP_TOOLCHAIN:-} ]]; then echo "$RUSTUP_TOOLCHAIN"; return; fi
  local f
  for f in "$SINEW_ROOT/rust-toolchain.toml" "$SINEW_ROOT/rust-toolchain"; do
    [[ -f $f ]] || continue
    sed -n 's/^ *channel *= *"\([^"]*\)".*/\1/p' "$f" | head -n 1
    # The legacy file is the bare channel name.
    [[ $f == *.toml ]] || head -n 1 "$f"
    return
  done
}

# 0 when version $1 >= version $2 (dotted numbers).
sinew_version_ge() {
  [[ $(printf '%s\n%s\n' "$2" "$1" | sort -t. -k1,1n -k2,2n -k3,3n | head -n 1) == "$2" ]]
}

# "1.95.0" from `cargo 1.95.0 (f2d3ce0bd 2026-03-21)`, or nothing when cargo does not run (a
# rustup proxy without a toolchain, say).
sinew_cargo_version() {
  sinew_cargo_env "$1" --version 2>/dev/null | sed -n 's/^cargo \([0-9][0-9.]*\).*/\1/p'
}

# Every cargo we may use, best guess first: $CARGO, cargo on PATH, $CARGO_HOME/bin, ~/.cargo/bin
# (under sudo: the invoking user's, since root's PATH lacks it). Absolute paths, one a line.
sinew_find_cargos() {
  local c home seen=" "
  home=$(sinew_build_home)
  for c in ${CARGO:+"$CARGO"} cargo ${CARGO_HOME:+"$CARGO_HOME/bin/cargo"} "$home/.cargo/bin/cargo"; do
    c=$(command -v "$c" 2>/dev/null) || continue
    [[ $seen == *" $c "* ]] && continue
    seen+="$c "
    echo "$c"
  done
}

# Runs the cargo at $1 with the rest as arguments, with its directory first on PATH (rustup's
# proxies find their rustc there). Under sudo it runs as the invoking user, or, with
# SINEW_CARGO_AS_CALLER=1 (the tests need root), as root with that user's rustup homes (root's
# HOME would point rustup at /root/.rustup).
sinew_cargo_env() {
  local cargo=$1 user home envs
  shift
  user=$(sinew_build_user)
  envs=("PATH=$(dirname "$cargo"):$PATH")
  [[ -n ${SINEW_RUST_TOOLCHAIN:-} ]] && envs+=("RUSTUP_TOOLCHAIN=$SINEW_RUST_TOOLCHAIN")
  if [[ -z $user ]]; then
    env "${envs[@]}" "$cargo" "$@"
  elif [[ ${SINEW_CARGO_AS_CALLER:-} == 1 ]]; then
    home=$(sinew_build_home)
    if [[ $cargo == "$home/.cargo/bin/cargo" ]]; then
      envs+=("RUSTUP_HOME=${RUSTUP_HOME:-$home/.rustup}" "CARGO_HOME=${CARGO_HOME:-$home/.cargo}")
    fi
    env "${envs[@]}" "$cargo" "$@"
  else
    sudo -u "$user" -H -- env "${envs[@]}" "$cargo" "$@"
  fi
}

# Runs a command as the build user (for rustup's installer), with HOME set to theirs.
sinew_as_build_user() {
  local user
  user=$(sinew_build_user)
  if [[ -n $user ]]; then sudo -u "$user" -H -- "$@"; else "$@"; fi
}

# Sets SINEW_CARGO to a cargo new enough for the workspace, installing Rust with rustup when
# there is none (or only an older one). SINEW_RUST_TOOLCHAIN is set when a rustup toolchain other
# than the user's default must be used for our builds.
sinew_rust() {
  local min pin cargo="" version="" c v home rustup
  min=$(sinew_min_rust)
  [[ -n $min ]] || sinew_die "cannot read rust-version from $SINEW_ROOT/Cargo.toml"
  pin=$(sinew_pinned_toolchain)
  while IFS= read -r c; do
    v=$(sinew_cargo_version "$c")
    if [[ -n $v ]] && sinew_version_ge "$v" "$min"; then
      SINEW_CARGO=$c
      return 0
    fi
    [[ -n $cargo ]] || { cargo=$c; version=$v; }
  done < <(sinew_find_cargos)
  if [[ -n $cargo ]]; then
    if [[ -n $pin && -n $version ]]; then
      sinew_die "the pinned toolchain $pin (RUSTUP_TOOLCHAIN or rust-toolchain.toml) has cargo $version; this workspace needs Rust $min or newer"
    fi
    rustup=$(dirname "$cargo")/rustup
    if [[ -x $rustup ]]; then
      # A rustup install whose default is too old (or missing): add a toolchain for our builds
      # only, leaving the user's default alone.
      local toolchain=${pin:-stable}
      sinew_say "cargo ${version:-(no toolchain)} at $cargo is older than Rust $min, which this workspace needs;" \
        "installing the $toolchain toolchain with rustup (downloads about 100 MB; your default toolchain stays as it is)"
      sinew_as_build_user "$rustup" toolchain install "$toolchain" --profile minimal -c rustfmt -c clippy \
        || sinew_die "rustup could not install the $toolchain toolchain (see above)"
      SINEW_RUST_TOOLCHAIN=$toolchain
      sinew_check_rust "$cargo" "$min"
      return 0
    fi
    sinew_say "cargo ${version:-(does not run)} at $cargo is older than Rust $min, which this workspace needs."
  else
    sinew_say "cargo not found; this workspace needs Rust $min or newer."
  fi
  home=$(sinew_build_home)
  local dest=${CARGO_HOME:-$home/.cargo}
  sinew_say "installing Rust with rustup into $dest (${pin:-stable} toolchain; downloads about 100 MB" \
    "from $SINEW_RUSTUP_URL and static.rust-lang.org; your shell profile is not changed)"
  command -v curl >/dev/null 2>&1 || sinew_die "curl is needed to download rustup (Debian package curl)"
  local init ok=1
  init=$(mktemp) || sinew_die "cannot create a temporary file"
  if curl --proto '=https' --tlsv1.2 -sSf -o "$init" "$SINEW_RUSTUP_URL"; then
    chmod a+r "$init"
    sinew_as_build_user sh "$init" -y --no-modify-path --profile minimal -c rustfmt -c clippy \
      --default-toolchain "${pin:-stable}" || ok=0
  else
    rm -f "$init"
    sinew_die "could not download rustup from $SINEW_RUSTUP_URL (no internet?); install Rust $min or newer yourself (https://rustup.rs)"
  fi
  rm -f "$init"
  ((ok)) || sinew_die "the rustup installer failed (see above)"
  cargo="$dest/bin/cargo"
  [[ -x $cargo ]] || sinew_die "rustup finished but $cargo is missing"
  sinew_check_rust "$cargo" "$min"
}

# Sets SINEW_CARGO after an install, or stops when the toolchain is still too old.
sinew_check_rust() {
  local version
  version=$(sinew_cargo_version "$1")
  if [[ -z $version ]] || ! sinew_version_ge "$version" "$2"; then
    sinew_die "after installing, cargo at $1 reports '${version:-nothing}', still not Rust $2 or newer"
  fi
  sinew_say "using cargo $version ($1)"
  SINEW_CARGO=$1
}

# Runs the found cargo (see sinew_rust) in the checkout.
sinew_cargo() {
  (cd "$SINEW_ROOT" && sinew_cargo_env "$SINEW_CARGO" "$@")
}

# The workspace's target directory (honours CARGO_TARGET_DIR and cargo config).
sinew_target_dir() {
  sinew_cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4
}

# The binaries `sinewctl up` runs, by package.
SINEW_BINS=(sinewctl:sinewctl sinew-proxy:sinew-proxy sinew-control-plane:sinew-control-plane
  sinew-demo:sinew-demo)

# Builds the binaries local mode and the e2e tests run. Silent when they are already newer than
# every source; otherwise one line saying what is built and how long a first build takes, then
# cargo's own progress (and its "Blocking waiting for file lock" when another build holds it).
# $1: debug or release.
sinew_build_bins() {
  local profile=$1 target dir stale="" pair
  local flags=(-j "${CARGO_BUILD_JOBS:-2}" --bins)
  [[ $profile == release ]] && flags+=(--release)
  for pair in "${SINEW_BINS[@]}"; do flags+=(-p "${pair#*:}"); done
  target=$(sinew_target_dir)
  for pair in "${SINEW_BINS[@]}"; do
    [[ -x $target/$profile/${pair%%:*} ]] || { stale=missing; break; }
  done
  if [[ -z $stale ]]; then
    local oldest="" bin
    for pair in "${SINEW_BINS[@]}"; do
      bin=$target/$profile/${pair%%:*}
      [[ -z $oldest || $bin -ot $oldest ]] && oldest=$bin
    done
    # What the binaries are built from (not the packages' tests, which would mark them stale).
    for dir in Cargo.toml Cargo.lock proto proxy/src proxy/Cargo.toml control-plane/src \
      control-plane/Cargo.toml injector-webhook/src injector-webhook/Cargo.toml cli/src \
      cli/Cargo.toml examples/demo/app; do
      if [[ -n $(find "$SINEW_ROOT/$dir" -newer "$oldest" -type f -print -quit 2>/dev/null) ]]; then
        stale=changed
        break
      fi
    done
  fi
  if [[ -n $stale ]]; then
    sinew_announce_build "$profile"
    sinew_cargo build "${flags[@]}"
  else
    # Up to date as far as file times tell: let cargo confirm, without its "Finished" line. Cargo
    # may still rebuild (a new toolchain, other features): then say so before its first line.
    sinew_cargo build "${flags[@]}" 2>&1 | {
      local line said=""
      while IFS= read -r line; do
        [[ $line =~ ^\ *Finished\  ]] && continue
        if [[ -z $said && $line =~ ^\ *Compiling\  ]]; then
          sinew_announce_build "$profile"
          said=1
        fi
        printf '%s\n' "$line" >&2
      done
    }
  fi
}

sinew_announce_build() {
  sinew_say "building sinewctl, the proxy, the control plane and the demo app ($1;" \
    "a first build takes about $SINEW_FIRST_BUILD on 2 cores, later ones only rebuild what changed)"
}
