//! devcontainer.json as `up` and `config` read it: JSONC, legacy properties, the
//! workspace, `${...}` variables, runArgs, remoteEnv (devaipod::fuzzing::devcontainer_json).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| devaipod::fuzzing::devcontainer_json(data));
