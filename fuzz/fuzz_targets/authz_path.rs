//! `sinew_fuzz_targets::targets::authz_path::check` under libFuzzer (the contract it checks is documented
//! there; the stable runner runs the same function).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sinew_fuzz_targets::targets::authz_path::check(data);
});
