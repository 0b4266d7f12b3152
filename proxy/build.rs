//! Links the sinew-proxy binary with the functions a proxy runs first in `.text`, from
//! `hot-symbols.txt` (made by `bench/hot-symbols.sh`, which says why: less of the binary is
//! resident). Only for lld, the default linker of x86_64 Linux; a symbol the file names that no
//! longer exists is ignored. `SINEW_NO_SYMBOL_ORDER=1` turns it off (another linker).
#![forbid(unsafe_code)]

fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=SINEW_NO_SYMBOL_ORDER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let off = std::env::var_os("SINEW_NO_SYMBOL_ORDER").is_some_and(|v| v != "0");
    let order = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hot-symbols.txt");
    if off || target != "x86_64-unknown-linux-gnu" || !order.exists() {
        return;
    }
    let arg = format!("-Wl,--symbol-ordering-file={}", order.display());
    println!("cargo:rustc-link-arg-bin=sinew-proxy={arg}");
    println!("cargo:rustc-link-arg-bin=sinew-proxy=-Wl,--no-warn-symbol-ordering");
}
