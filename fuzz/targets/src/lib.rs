//! Sinew's fuzz targets: one plain function per parser that takes bytes from a user or the
//! network, each checking what its parser promises, and a mutation fuzzer that runs them on
//! stable Rust (cargo-fuzz needs nightly).
//!
//! Promise of every target: for any input it returns normally when the parser under it keeps
//! its contract, and panics (an assertion naming the broken promise) when it does not. A parser
//! error is an answer, not a failure. The same functions run under
//! - `tests/replay.rs`: every kept input (`fuzz/seeds`, `fuzz/regressions`, `fuzz/corpus`), then
//!   a bounded, seeded mutation run per target (what CI runs);
//! - the `fuzz-stable` binary: longer local runs that keep new inputs in `fuzz/corpus/<target>`;
//! - the cargo-fuzz binaries in `fuzz/fuzz_targets` (libFuzzer, coverage-guided; nightly flags).
//!
//! Adding a target is one entry in [`TARGETS`] and a seed directory.

#![forbid(unsafe_code)]

pub mod corpus;
pub mod mutate;
pub mod run;
pub mod targets;

use targets::*;

/// One fuzz target.
pub struct Target {
    /// Its name: the directory of its inputs under `seeds/`, `regressions/`, `corpus/`.
    pub name: &'static str,
    /// Checks one input and returns its outcome; panics when a promise is broken.
    pub check: fn(&[u8]) -> String,
    /// Dictionaries (files of `fuzz/dicts/`) whose tokens the mutator inserts.
    pub dicts: &'static [&'static str],
    /// Inputs longer than this are cut by the mutator (keeps each iteration cheap).
    pub max_len: usize,
    /// Mutation iterations in the CI test (sized so the whole test stays near 2 minutes in a
    /// debug build on the 2-core CI machine; the slow targets run fewer).
    pub ci_iterations: usize,
}

const HTTP: &[&str] = &["http.dict"];
const TLS: &[&str] = &["tls.dict"];
const YAML: &[&str] = &["yaml.dict", "k8s.dict"];

/// Every target, in the order the runner takes them.
pub const TARGETS: &[Target] = &[
    t("detect", detect::check, HTTP, 512, 30000),
    t("client_hello", client_hello::check, TLS, 1024, 30000),
    t("h1_guard", h1_guard::check, HTTP, 2048, 20000),
    t("h1_guarded_io", h1_guarded_io::check, HTTP, 2048, 20000),
    t("request_head", request_head::check, HTTP, 2048, 6000),
    t(
        "mesh_tcp_header",
        mesh_tcp_header::check,
        &["mesh.dict"],
        256,
        30000,
    ),
    t(
        "proxy_config",
        proxy_config::check,
        &["yaml.dict", "proxy.dict"],
        4096,
        6000,
    ),
    t("discovery", discovery::check, &["proxy.dict"], 4096, 6000),
    t("registry_yaml", registry_yaml::check, YAML, 4096, 4000),
    t("registry_object", registry_object::check, YAML, 4096, 6000),
    t(
        "admission_validate",
        admission::check_validate,
        &["k8s.dict"],
        4096,
        6000,
    ),
    t(
        "admission_inject",
        admission::check_inject,
        &["k8s.dict"],
        8192,
        3000,
    ),
    t(
        "local_token",
        local_token::check,
        &["token.dict"],
        1024,
        30000,
    ),
    t("csr", csr::check, &["pem.dict"], 2048, 15000),
    t(
        "peer_header",
        peer_header::check,
        &["peer.dict"],
        1024,
        30000,
    ),
    t("authz_path", authz_path::check, &["path.dict"], 512, 30000),
    t(
        "trace_context",
        trace_context::check,
        &["trace.dict"],
        1024,
        30000,
    ),
];

const fn t(
    name: &'static str,
    check: fn(&[u8]) -> String,
    dicts: &'static [&'static str],
    max_len: usize,
    ci_iterations: usize,
) -> Target {
    Target {
        name,
        check,
        dicts,
        max_len,
        ci_iterations,
    }
}

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
