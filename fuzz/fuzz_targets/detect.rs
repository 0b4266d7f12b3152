//! `sinew_proxy::detect::classify` on arbitrary first bytes of a client stream.
//!
//! The target itself (and the contract it checks) is `sinew_fuzz_targets::targets::detect`,
//! shared with the stable runner (`cargo test -p sinew-fuzz-targets`, `fuzz-stable`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sinew_fuzz_targets::targets::detect::check(data);
});
