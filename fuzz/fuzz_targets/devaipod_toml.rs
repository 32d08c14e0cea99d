//! The user's devaipod.toml, parsed, checked and read setting by setting
//! (devaipod::fuzzing::devaipod_toml).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| devaipod::fuzzing::devaipod_toml(data));
