//! `sinew_proxy::tls::client_hello::parse` on arbitrary first bytes of an inbound connection.
//!
//! The target itself (and the contract it checks) is `sinew_fuzz_targets::targets::client_hello`,
//! shared with the stable runner (`cargo test -p sinew-fuzz-targets`, `fuzz-stable`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sinew_fuzz_targets::targets::client_hello::check(data);
});
