//! hyper's HTTP/1 server parsing behind our request-smuggling guard, configured like
//!
//! The target itself (and the contract it checks) is `sinew_fuzz_targets::targets::request_head`,
//! shared with the stable runner (`cargo test -p sinew-fuzz-targets`, `fuzz-stable`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sinew_fuzz_targets::targets::request_head::check(data);
});
