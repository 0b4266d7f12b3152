#!/usr/bin/env bash
# Tests of scripts/lib/bootstrap.sh against a PATH of stubs: what it installs, when it downloads
# Rust, and what it says, on machines that lack cargo, have an old one, lack a C compiler, or lack
# root. Nothing is installed or downloaded: apt-get, sudo, curl, rustup and cargo are stubs that
# record how they were called (in $case/calls) and the "rustup installer" is a script curl wrote.
#
#   scripts/tests/bootstrap.sh      # prints one line per failure, then "bootstrap: N passed, M failed"
# shellcheck disable=SC2016  # stub bodies are sh code, expanded when the stub runs
set -euo pipefail
lib=$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/bootstrap.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Real tools the library itself uses; everything else on PATH is a stub or absent.
utils=(bash sh env sed grep head sort cut dirname mktemp chmod rm cat find mkdir tr)

passed=0 failed=0 n=0
case_dir="" out="" rc=0

# A fresh machine: an empty home, a checkout whose workspace wants Rust 1.88, and only `utils`.
setup() {
  n=$((n + 1))
  case_dir=$work/$n
  mkdir -p "$case_dir/bin" "$case_dir/home" "$case_dir/root"
  printf '[workspace.package]\nrust-version = "1.88"\n' >"$case_dir/root/Cargo.toml"
  : >"$case_dir/calls"
  local u
  for u in "${utils[@]}"; do ln -s "$(command -v "$u")" "$case_dir/bin/$u"; done
  stub id 'echo "${STUB_UID:-0}"'
}

# stub NAME BODY: an executable that records "NAME ARGS" in calls, then runs BODY (sh).
stub() {
  local file=${3:-$case_dir/bin/$1}
  mkdir -p "$(dirname "$file")"
  printf '#!/bin/sh\necho "%s $*" >>"%s"\n%s\n' "$1" "$case_dir/calls" "$2" >"$file"
  chmod +x "$file"
}

# The C toolchain and curl are there.
build_tools() {
  local t
  for t in cc c++ make pkg-config; do stub "$t" ':'; done
  stub curl 'echo "stub: curl" >&2'
}

# A cargo reporting version $1, at $2 (default: on PATH).
cargo_at() {
  stub cargo "echo 'cargo $1 (0000000 2026-01-01)'" "${2:-}"
}

# A curl that "downloads" a rustup installer which records its arguments and creates a cargo.
curl_with_installer() {
  stub curl 'echo "stub: curl" >&2
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
cat >"$out" <<EOF
echo "rustup-init \$*" >>"'"$case_dir/calls"'"
dest=\${CARGO_HOME:-\$HOME/.cargo}/bin
mkdir -p "\$dest"
printf "#!/bin/sh\necho \"cargo 1.95.0 (0000000 2026-03-21)\"\n" >"\$dest/cargo"
chmod +x "\$dest/cargo"
EOF'
}

# Runs the bootstrap steps in a clean environment; extra NAME=VALUE arguments are added to it.
run() {
  rc=0
  /usr/bin/env -i PATH="$case_dir/bin" HOME="$case_dir/home" SINEW_ROOT="$case_dir/root" \
    SINEW_SBIN_PATH="" "$@" bash -c '
      set -euo pipefail
      . "$1"
      SINEW_WHO=test
      sinew_packages "${SINEW_BUILD_TOOLS[@]}"
      sinew_rust
      echo "CARGO=$SINEW_CARGO TOOLCHAIN=${SINEW_RUST_TOOLCHAIN:-}"' _ "$lib" >"$case_dir/out" 2>&1 || rc=$?
  out=$(cat "$case_dir/out")
}

calls() { cat "$case_dir/calls"; }

check() {
  local what=$1
  shift
  if "$@"; then return 0; fi
  echo "  $what" >>"$case_dir/failures"
  return 0
}

has() { [[ $1 == *"$2"* ]]; }
lacks() { [[ $1 != *"$2"* ]]; }
# Line of the first match of $2 in $1 (0 when absent).
line_of() { grep -n -m 1 -F -- "$2" <<<"$1" | cut -d: -f1 || echo 0; }

finish() {
  local name=$1
  if [[ -s $case_dir/failures ]]; then
    failed=$((failed + 1))
    echo "FAIL bootstrap: $name"
    cat "$case_dir/failures"
    sed 's/^/    out: /' "$case_dir/out"
    sed 's/^/    call: /' "$case_dir/calls"
  else
    passed=$((passed + 1))
  fi
}

# --- cases -------------------------------------------------------------------------------------

setup; build_tools; cargo_at 1.95.0
run
check "exit 0" test "$rc" -eq 0
check "uses the cargo on PATH" has "$out" "CARGO=$case_dir/bin/cargo "
check "no apt-get" lacks "$(calls)" "apt-get"
check "no download" lacks "$(calls)" "curl"
check "says nothing" test "$(line_of "$out" "test:")" -eq 0
finish "a_new_enough_cargo_on_path_means_no_install_and_no_download"

setup; build_tools; cargo_at 1.88.0 "$case_dir/home/.cargo/bin/cargo"
run
check "exit 0" test "$rc" -eq 0
check "finds ~/.cargo/bin/cargo off PATH" has "$out" "CARGO=$case_dir/home/.cargo/bin/cargo "
check "no download" lacks "$(calls)" "curl"
finish "cargo_in_home_not_on_path_is_found_and_nothing_is_downloaded"

setup; build_tools; curl_with_installer
run
check "exit 0" test "$rc" -eq 0
check "says cargo is missing" has "$out" "test: cargo not found; this workspace needs Rust 1.88 or newer"
check "says it will install rustup" has "$out" "test: installing Rust with rustup into $case_dir/home/.cargo"
said=$(line_of "$out" "installing Rust with rustup") downloaded=$(line_of "$out" "stub: curl")
check "says so before downloading ($said < $downloaded)" test "$said" -gt 0 -a "$said" -lt "$downloaded"
check "downloads rustup-init over https" has "$(calls)" "curl --proto =https --tlsv1.2 -sSf -o "
check "from sh.rustup.rs" has "$(calls)" "https://sh.rustup.rs"
check "installs non-interactively, stable, PATH untouched" \
  has "$(calls)" "rustup-init -y --no-modify-path --profile minimal -c rustfmt -c clippy --default-toolchain stable"
check "uses the installed cargo" has "$out" "CARGO=$case_dir/home/.cargo/bin/cargo "
check "reports its version" has "$out" "test: using cargo 1.95.0"
finish "missing_cargo_says_so_then_installs_rust_with_rustup"

setup; build_tools; curl_with_installer; cargo_at 1.63.0
run
check "exit 0" test "$rc" -eq 0
check "says the cargo is too old" has "$out" "test: cargo 1.63.0 at $case_dir/bin/cargo is older than Rust 1.88"
check "installer runs" has "$(calls)" "rustup-init -y"
check "uses the new cargo, not the old one" has "$out" "CARGO=$case_dir/home/.cargo/bin/cargo "
finish "a_cargo_older_than_rust_version_without_rustup_gets_rustup_installed"

setup; build_tools; curl_with_installer
stub cargo 'if [ "$RUSTUP_TOOLCHAIN" = stable ]; then echo "cargo 1.95.0 (x)"; else echo "cargo 1.80.0 (x)"; fi'
stub rustup ':'
run
check "exit 0" test "$rc" -eq 0
check "adds the stable toolchain" has "$(calls)" "rustup toolchain install stable --profile minimal"
check "leaves the default alone" lacks "$(calls)" "rustup default"
check "no rustup-init download" lacks "$(calls)" "curl"
check "builds with the added toolchain" has "$out" "TOOLCHAIN=stable"
finish "an_old_rustup_default_gets_a_stable_toolchain_for_our_builds_only"

setup; build_tools; curl_with_installer
run RUSTUP_TOOLCHAIN=1.90.0
check "exit 0" test "$rc" -eq 0
check "installs the pinned toolchain" has "$(calls)" "--default-toolchain 1.90.0"
finish "rustup_toolchain_pins_the_version_rustup_installs"

setup; build_tools; curl_with_installer
printf '[toolchain]\nchannel = "1.91.1"\n' >"$case_dir/root/rust-toolchain.toml"
run
check "installs the channel of rust-toolchain.toml" has "$(calls)" "--default-toolchain 1.91.1"
finish "rust_toolchain_toml_pins_the_version_rustup_installs"

setup; build_tools; cargo_at 1.80.0
run RUSTUP_TOOLCHAIN=1.80.0
check "fails" test "$rc" -ne 0
check "names the pin and the need" has "$out" "the pinned toolchain 1.80.0"
check "no download" lacks "$(calls)" "curl"
finish "a_pinned_toolchain_older_than_rust_version_is_an_error_not_a_download"

setup; stub curl ':'; stub pkg-config ':'; stub apt-get ':'; cargo_at 1.95.0
run
check "exit 0" test "$rc" -eq 0
check "says what it installs" has "$out" "test: installing Debian packages: build-essential"
check "apt-get update" has "$(calls)" "apt-get update -qq"
check "installs build-essential once" \
  has "$(calls)" "apt-get install -y -qq --no-install-recommends ca-certificates build-essential"
check "nothing else" test "$(grep -c 'apt-get install' "$case_dir/calls")" -eq 1
finish "missing_cc_installs_build_essential_with_apt"

setup; stub curl ':'; stub apt-get ':'; cargo_at 1.95.0
stub sudo 'while [ "$1" != "${1#-}" ]; do shift; done; exec "$@"'
run STUB_UID=1000
check "exit 0" test "$rc" -eq 0
check "apt-get through sudo" has "$(calls)" "sudo env DEBIAN_FRONTEND=noninteractive apt-get install"
check "build-essential and pkg-config" has "$(calls)" "ca-certificates build-essential pkg-config"
finish "not_root_installs_packages_through_sudo"

setup; stub curl ':'; stub apt-get ':'; cargo_at 1.95.0
run STUB_UID=1000
check "fails" test "$rc" -ne 0
check "clear error naming the packages and the way out" \
  has "$out" "test: needs the Debian packages build-essential pkg-config; run as root, or install sudo"
check "no apt-get" lacks "$(calls)" "apt-get"
finish "not_root_without_sudo_is_a_clear_error"

setup; build_tools
cargo_at 1.95.0 "$case_dir/alice/.cargo/bin/cargo"
stub getent "echo 'alice:x:1000:1000::$case_dir/alice:/bin/bash'"
stub sudo 'while [ "$1" != "${1#-}" ] || [ "$1" = alice ]; do shift; done; exec "$@"'
run SUDO_USER=alice
check "exit 0" test "$rc" -eq 0
check "finds the sudo caller's toolchain" has "$out" "CARGO=$case_dir/alice/.cargo/bin/cargo "
check "runs it as the caller" has "$(calls)" "sudo -u alice -H -- env"
finish "under_sudo_the_callers_toolchain_is_found_and_run_as_them"

setup; build_tools
stub cargo "echo \"cargo-env RUSTUP_HOME=\$RUSTUP_HOME CARGO_HOME=\$CARGO_HOME\" >>'$case_dir/calls'
echo 'cargo 1.95.0 (0000000 2026-01-01)'" "$case_dir/alice/.cargo/bin/cargo"
stub getent "echo 'alice:x:1000:1000::$case_dir/alice:/bin/bash'"
stub sudo 'exit 1'
run SUDO_USER=alice SINEW_CARGO_AS_CALLER=1
check "exit 0" test "$rc" -eq 0
check "finds the sudo caller's toolchain" has "$out" "CARGO=$case_dir/alice/.cargo/bin/cargo "
check "runs it as root with the caller's rustup homes" \
  has "$(calls)" "cargo-env RUSTUP_HOME=$case_dir/alice/.rustup CARGO_HOME=$case_dir/alice/.cargo"
check "not through sudo" lacks "$(calls)" "sudo"
finish "test_sh_under_sudo_runs_the_callers_toolchain_as_root"

setup; build_tools
stub curl 'echo "curl: (6) Could not resolve host: sh.rustup.rs" >&2; exit 6'
run
check "fails" test "$rc" -ne 0
check "says the download failed and what to do" has "$out" "test: could not download rustup from https://sh.rustup.rs"
finish "a_failed_download_is_a_clear_error"

# --- the Python venv of the test tools -------------------------------------------------------

# A python3 whose venv module works (unless $case_dir/no-ensurepip exists: Debian without
# python3-venv); `-m venv DIR` makes DIR/bin/python, a stub whose pip exits with $STUB_PIP_RC.
python3_with_venv() {
  stub python3 'case "$*" in
*ensurepip*) [ ! -e "'"$case_dir"'/no-ensurepip" ] ;;
*version_info*) exit 0 ;;
"-m venv --clear "*)
  mkdir -p "$4/bin"
  printf "#!/bin/sh\necho \"venv-python \$*\" >>\"%s\"\nexit \${STUB_PIP_RC:-0}\n" "'"$case_dir/calls"'" >"$4/bin/python"
  chmod +x "$4/bin/python" ;;
esac'
}

# The pinned tool list, as the library has it.
py_tools=$(bash -c '. "$1"; echo "${SINEW_PY_TOOLS[*]}"' _ "$lib")

# Runs sinew_py_venv; extra NAME=VALUE arguments are added to the environment.
run_venv() {
  rc=0
  /usr/bin/env -i PATH="$case_dir/bin" HOME="$case_dir/home" SINEW_ROOT="$case_dir/root" \
    SINEW_SBIN_PATH="" "$@" bash -c '
      set -euo pipefail
      . "$1"
      SINEW_WHO=test
      sinew_py_venv
      echo "PYTHON=$SINEW_PYTHON"' _ "$lib" >"$case_dir/out" 2>&1 || rc=$?
  out=$(cat "$case_dir/out")
}

setup; python3_with_venv
run_venv
check "exit 0" test "$rc" -eq 0
check "the tools are pinned" has "$py_tools" "kmock==0.8"
check "says what it installs, and where" \
  has "$out" "test: installing $py_tools into $case_dir/root/target/py-venv"
check "creates the venv under target" has "$(calls)" "python3 -m venv --clear $case_dir/root/target/py-venv"
check "pip installs the pinned tools" \
  has "$(calls)" "venv-python -m pip install --quiet --disable-pip-version-check $py_tools"
check "gives the venv python" has "$out" "PYTHON=$case_dir/root/target/py-venv/bin/python"
: >"$case_dir/calls"
run_venv
check "second run: exit 0" test "$rc" -eq 0
check "second run: no python3, no pip" test ! -s "$case_dir/calls"
check "second run: same python, silently" test "$out" = "PYTHON=$case_dir/root/target/py-venv/bin/python"
finish "the_test_venv_is_made_once_then_reused_without_pip"

setup; python3_with_venv
run_venv CARGO_TARGET_DIR="$case_dir/elsewhere"
check "exit 0" test "$rc" -eq 0
check "the venv follows CARGO_TARGET_DIR" has "$out" "PYTHON=$case_dir/elsewhere/py-venv/bin/python"
finish "the_test_venv_lives_in_cargo_target_dir"

setup; python3_with_venv; touch "$case_dir/no-ensurepip"
stub apt-get 'case "$*" in *install*) rm -f "'"$case_dir"'/no-ensurepip" ;; esac'
run_venv
check "exit 0" test "$rc" -eq 0
check "installs python3-venv with apt" \
  has "$(calls)" "apt-get install -y -qq --no-install-recommends ca-certificates python3-venv"
check "then makes the venv" has "$(calls)" "python3 -m venv --clear"
finish "python3_without_venv_gets_python3_venv_from_apt"

setup; python3_with_venv
run_venv STUB_PIP_RC=1
check "fails" test "$rc" -ne 0
check "says pip failed, and the way out" has "$out" "test: pip could not install $py_tools into $case_dir/root/target/py-venv (no internet? PIP_INDEX_URL"
: >"$case_dir/calls"
run_venv
check "the next run installs again" has "$(calls)" "venv-python -m pip install"
finish "a_failed_pip_install_is_a_clear_error_and_is_retried_next_time"

echo "bootstrap: $passed passed, $failed failed"
((failed == 0))
