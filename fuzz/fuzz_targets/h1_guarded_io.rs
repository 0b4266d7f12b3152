//! `sinew_proxy::http::guard::Guarded` as hyper sees it: an `AsyncRead` over a client stream that
//!
//! The target itself (and the contract it checks) is `sinew_fuzz_targets::targets::h1_guarded_io`,
//! shared with the stable runner (`cargo test -p sinew-fuzz-targets`, `fuzz-stable`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sinew_fuzz_targets::targets::h1_guarded_io::check(data);
});
