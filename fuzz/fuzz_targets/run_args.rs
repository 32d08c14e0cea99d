//! runArgs, each argument ended by a NUL byte, and the same text as an --env-file
//! (devaipod::fuzzing::run_args).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| devaipod::fuzzing::run_args(data));
