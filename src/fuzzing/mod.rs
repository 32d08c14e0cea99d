//! The readers of untrusted text as the fuzz targets (`fuzz/`, cargo-fuzz) and the
//! property tests (`props`, proptest) drive them: devcontainer.json with its variables,
//! runArgs, devaipod.toml. Each entry point takes bytes as a file would hold them, stops
//! where the loader refuses them (over the size limit, not UTF-8), runs the reader the
//! way `up` and `config` do, and panics when an error breaks what the reader promises
//! (a position, a prefix). Any panic here is a bug in a reader. docs/fuzzing.md.
//!
//! Compiled for the unit tests and with the `fuzzing` feature only.

use std::collections::BTreeMap;
use std::path::Path;

use crate::devcontainer::{self, vars};
use crate::plan::run_args;

#[cfg(test)]
mod props;

/// The largest devcontainer.json `load` reads; runArgs and env files are held to it too
/// (runArgs are part of that file).
pub const DEVCONTAINER_MAX_BYTES: usize = devcontainer::MAX_CONFIG_BYTES as usize;

/// The largest devaipod.toml `config::load` reads.
pub const DEVAIPOD_TOML_MAX_BYTES: usize = crate::config::MAX_FILE_BYTES as usize;

/// Where the fuzzed devcontainer.json is said to be (errors start with it).
const CONFIG_PATH: &str = "/repo/.devcontainer/devcontainer.json";

/// The longest value Linux lets one environment variable have (MAX_ARG_STRLEN).
const LONGEST_ENV_VALUE: usize = 128 * 1024;

/// The host environment the variables see: a few ordinary variables, an empty one, and
/// one as long as Linux allows (what a repo's `${localEnv:...}` could multiply).
fn host_env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/dev".into()),
        "PATH" => Some("/usr/local/bin:/usr/bin:/bin".into()),
        "EMPTY" => Some(String::new()),
        "UNICODE" => Some("\u{e9}\u{301}\u{1f600}\u{202e}".into()),
        "LONG" => Some("x".repeat(LONGEST_ENV_VALUE)),
        _ => None,
    }
}

/// The workspace container's environment for `${containerEnv:...}` (the image sets it,
/// so the repo does: one variable as long as Linux allows).
fn container_env() -> BTreeMap<String, String> {
    [
        ("PATH", "/usr/bin:/bin".to_string()),
        ("LONG", "y".repeat(LONGEST_ENV_VALUE)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// devcontainer.json: parsed as `load` does once it has read the file (typed and raw,
/// with the property warnings), then read as `up` and `config` do (legacy properties,
/// the workspace, every `${...}` variable), then its runArgs and its remoteEnv's
/// `${containerEnv:...}`. A parse error must be `FILE:LINE:COL: message` with a
/// position inside the text.
pub fn devcontainer_json(data: &[u8]) {
    let Some(text) = text_within(data, DEVCONTAINER_MAX_BYTES) else {
        return;
    };
    let path = Path::new(CONFIG_PATH);
    let loaded = match devcontainer::from_text(path, text) {
        Ok(l) => l,
        Err(e) => {
            let msg = format!("{e:#}");
            let rest = msg
                .strip_prefix(CONFIG_PATH)
                .and_then(|r| r.strip_prefix(':'))
                .unwrap_or_else(|| panic!("a parse error must start with FILE: {msg}"));
            check_position(rest, text, Breaks::JsoncLines);
            return;
        }
    };
    let _ = devcontainer::uses_host_env(&loaded.raw);
    let _ = devcontainer::container_env_from_host(&loaded.raw);
    let reading = match devcontainer::read(
        &loaded,
        Path::new("/repo/sub"),
        Path::new("/repo"),
        &host_env,
    ) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                msg.starts_with(&format!("{CONFIG_PATH}: ")),
                "an error of the variables must name the file: {msg}"
            );
            return;
        }
    };
    if let Some(args) = &reading.config.run_args {
        run_args_checked(args);
    }
    if let Some(remote_env) = &reading.config.remote_env
        && let Ok(out) = vars::remote_env_in(remote_env, &container_env())
    {
        let before: usize = remote_env.values().map(String::len).sum();
        let after: usize = out.values().map(String::len).sum();
        assert!(
            after <= before + vars::MAX_ADDED_BYTES,
            "remoteEnv grew past the limit: {before} to {after} bytes"
        );
    }
}

/// runArgs: the data is the list of arguments, each ended by a NUL byte (as runArgs'
/// strings may hold anything else). Every error must start with `runArgs: `. The same
/// text is also read as an `--env-file`, whose errors must be `FILE:LINE:1: `.
pub fn run_args(data: &[u8]) {
    let Some(text) = text_within(data, DEVCONTAINER_MAX_BYTES) else {
        return;
    };
    let args: Vec<String> = text.split_terminator('\0').map(str::to_string).collect();
    run_args_checked(&args);
    if let Err(e) = run_args::parse_env_file(text, ".env") {
        let rest = e
            .strip_prefix(".env:")
            .unwrap_or_else(|| panic!("an env file error must start with FILE: {e}"));
        check_position(rest, text, Breaks::Newlines);
    }
}

fn run_args_checked(args: &[String]) {
    if let Err(e) = run_args::parse(args, "/repo") {
        assert!(
            e.starts_with("runArgs: "),
            "a runArgs error must say so: {e}"
        );
    }
}

/// devaipod.toml: parsed and checked as `config::load` does, then every setting read
/// as `up` reads it. A parse error must be `LINE:COL: message` inside the text.
pub fn devaipod_toml(data: &[u8]) {
    let Some(text) = text_within(data, DEVAIPOD_TOML_MAX_BYTES) else {
        return;
    };
    let config = match crate::config::parse(text) {
        Ok(c) => c,
        Err(e) => {
            check_position(&e, text, Breaks::Newlines);
            return;
        }
    };
    let file = Path::new("/home/dev/.config/devaipod.toml");
    let _ = config.secret_lists(file);
    let _ = config.agent_pids_limit(file);
    let _ = config.agent_memory_limit(file);
    let _ = config.agent_opencode_json(file);
    let _ = config.agent.network_mode();
    let _ = config.agent.credential_inputs();
}

/// The data as the loaders accept it: at most `limit` bytes of UTF-8.
fn text_within(data: &[u8], limit: usize) -> Option<&str> {
    if data.len() > limit {
        return None;
    }
    std::str::from_utf8(data).ok()
}

/// What ends a line for a reader's positions.
#[derive(Clone, Copy)]
enum Breaks {
    /// `\n` (TOML, env files).
    Newlines,
    /// `\n` and a `\r` not before one (jsonc-parser: a lone `\r` ends a line comment).
    JsoncLines,
}

/// `LINE:COL: message` with LINE a line of `text` (or the one after its last break)
/// and COL at most one past that line's last character.
fn check_position(msg: &str, text: &str, breaks: Breaks) {
    let bad = || panic!("an error must start with LINE:COL: inside the text: {msg:?}");
    let mut parts = msg.splitn(3, ':');
    let (Some(line), Some(col), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        bad()
    };
    let (Ok(line), Ok(col)) = (line.parse::<usize>(), col.parse::<usize>()) else {
        bad()
    };
    if !rest.starts_with(' ') || line == 0 || col == 0 {
        bad()
    }
    let Some(this_line) = lines(text, breaks).into_iter().nth(line - 1) else {
        bad()
    };
    if col > this_line.chars().count() + 1 {
        bad()
    }
}

fn lines(text: &str, breaks: Breaks) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let lone_cr = c == b'\r' && b.get(i + 1) != Some(&b'\n');
        if c == b'\n' || (matches!(breaks, Breaks::JsoncLines) && lone_cr) {
            // Both are ASCII: i and i + 1 are character boundaries.
            out.push(&text[start..i]);
            start = i + 1;
        }
    }
    out.push(&text[start..]);
    out
}
