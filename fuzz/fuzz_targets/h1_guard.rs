//! The request-smuggling framer `sinew_proxy::http::guard::Framer`, fed one client byte stream
//!
//! The target itself (and the contract it checks) is `sinew_fuzz_targets::targets::h1_guard`,
//! shared with the stable runner (`cargo test -p sinew-fuzz-targets`, `fuzz-stable`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sinew_fuzz_targets::targets::h1_guard::check(data);
});
