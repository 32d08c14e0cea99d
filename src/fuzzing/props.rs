//! Property tests of the three readers (proptest): arbitrary bytes, and inputs shaped
//! like the real thing (JSONC with comments, nesting and variables; runArgs in every
//! flag form; devaipod.toml with the real tables and keys, and others). Each case runs
//! the entry point of [`super`] on a thread of its own with a deadline, so a hang fails
//! the test instead of stalling it. The unit-test run tries a few dozen cases of each;
//! `PROPTEST_CASES=N` runs more (`just fuzz` without cargo-fuzz). A failing case that
//! proptest shrinks is kept in `proptest-regressions/fuzzing/props.txt` and tried first
//! on every later run. docs/fuzzing.md.

use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::Value;

use crate::devcontainer::{self, vars};
use crate::plan::run_args;

/// No single case may take longer (a debug build reads a 1 MiB file in well under this).
const DEADLINE: Duration = Duration::from_secs(20);

/// The stack of the thread a case runs on: tokio's and the test harness's default, the
/// smallest a reader runs on in devaipod.
const STACK: usize = 2 << 20;

/// `PROPTEST_CASES`, else `default` (the unit-test run).
fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// An entry point of [`super`].
type Reader = fn(&[u8]);

/// Runs `reader(data)` on a thread with [`STACK`], failing if it panics or takes
/// longer than [`DEADLINE`].
fn bounded(reader: Reader, data: Vec<u8>) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("fuzz-case".into())
        .stack_size(STACK)
        .spawn(move || {
            reader(&data);
            let _ = done.send(());
        })
        .expect("spawning the case's thread");
    match finished.recv_timeout(DEADLINE) {
        Ok(()) => worker.join().expect("the case finished"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // It panicked: report its panic as this test's.
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic)
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the reader did not return within {DEADLINE:?}: a hang")
        }
    }
}

// ---------------------------------------------------------------------------------
// Pieces shared by the strategies.

/// Strings that trip readers: escapes, odd unicode (combining marks, RTL override,
/// astral planes, line separators, a BOM), separators and variable syntax.
fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\u{e9}\u{301}".into()),
        Just("\u{1f600}".into()),
        Just("\u{202e}gnp.exe".into()),
        Just("\u{2028}\u{2029}".into()),
        Just("\u{feff}".into()),
        Just("\u{0}".into()),
        Just("\u{7f}\u{1b}[31m".into()),
        Just("\r".into()),
        Just("\r\n".into()),
        Just("=".into()),
        Just(":".into()),
        Just(",".into()),
        Just("/".into()),
        Just("..".into()),
        Just("-".into()),
        Just("${".into()),
        Just("}".into()),
        "[a-zA-Z0-9_./-]{1,12}",
        any::<String>(),
    ]
}

/// A string value with `${...}` forms among literal text.
fn var_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => odd_text(),
        1 => Just("${localEnv:HOME}".to_string()),
        1 => Just("${localEnv:LONG}".to_string()),
        1 => Just("${localEnv:UNICODE}".to_string()),
        1 => Just("${env:PATH}".to_string()),
        1 => Just("${localEnv:NOPE:fallback}".to_string()),
        1 => Just("${localEnv:NOPE:a:b}".to_string()),
        1 => Just("${localEnv}".to_string()),
        1 => Just("${env}".to_string()),
        1 => Just("${localEnv:}".to_string()),
        1 => Just("${localEnv::}".to_string()),
        1 => Just("${containerEnv:PATH}".to_string()),
        1 => Just("${containerEnv:LONG}".to_string()),
        1 => Just("${containerEnv:NOPE:d}".to_string()),
        1 => Just("${containerEnv:".to_string()),
        1 => Just("${localWorkspaceFolder}".to_string()),
        1 => Just("${localWorkspaceFolderBasename}".to_string()),
        1 => Just("${containerWorkspaceFolder}".to_string()),
        1 => Just("${containerWorkspaceFolderBasename}".to_string()),
        1 => Just("${devcontainerId}".to_string()),
        1 => Just("${unknown:x}".to_string()),
        1 => "\\$\\{[a-zA-Z:]{0,12}\\}?",
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

// ---------------------------------------------------------------------------------
// devcontainer.json.

/// A JSON tree, rendered as JSONC (comments, trailing commas, any whitespace) or as
/// plain JSON; containers carry the bits that decorate them.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    /// The number as written.
    Num(String),
    /// The string literal as written, quotes and escapes included.
    Str(String),
    Arr(Vec<Json>, u8),
    Obj(Vec<(String, Json)>, u8),
}

/// Property names of the spec (and legacy ones), so that objects look like configs.
const KEYS: &[&str] = &[
    "image",
    "name",
    "runArgs",
    "containerEnv",
    "remoteEnv",
    "mounts",
    "forwardPorts",
    "appPort",
    "features",
    "build",
    "dockerFile",
    "context",
    "workspaceFolder",
    "workspaceMount",
    "hostRequirements",
    "customizations",
    "extensions",
    "settings",
    "devPort",
    "dockerComposeFile",
    "postCreateCommand",
    "initializeCommand",
    "capAdd",
    "securityOpt",
    "privileged",
    "overrideCommand",
    "remoteUser",
    "containerUser",
    "vscode",
    "dockerfile",
    "args",
    "target",
    "cpus",
    "memory",
];

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-0".to_string()),
        Just("1.5".to_string()),
        Just("1e400".to_string()),
        Just("-1e400".to_string()),
        Just("1e-400".to_string()),
        Just("123456789012345678901234567890".to_string()),
        Just("9223372036854775808".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("0.1e1".to_string()),
        Just("65536".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
    ]
}

fn string_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => var_string().prop_map(|s| Value::String(s).to_string()),
        1 => Just(r#""\ud800""#.to_string()),
        1 => Just(r#""\udc00\ud800""#.to_string()),
        1 => Just(r#""\ud83d\ude00""#.to_string()),
        1 => Just(r#""\u0000\/\b\f\n\r\t""#.to_string()),
        1 => Just(r#""\u00""#.to_string()),
        1 => Just(r#""\x41""#.to_string()),
        1 => Just("\"tab\tinside\"".to_string()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => odd_text(),
    ]
}

fn json(depth: u32) -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Num),
        string_literal().prop_map(Json::Str),
    ];
    leaf.prop_recursive(depth, 96, 8, |inner| {
        prop_oneof![
            (proptest::collection::vec(inner.clone(), 0..8), any::<u8>())
                .prop_map(|(v, d)| Json::Arr(v, d)),
            (proptest::collection::vec((key(), inner), 0..8), any::<u8>())
                .prop_map(|(v, d)| Json::Obj(v, d)),
        ]
    })
}

/// Comments, line breaks and whitespace as a decoration byte asks for.
fn filler(out: &mut String, deco: u8, at: u8) {
    match (deco >> at) & 3 {
        0 => {}
        1 => out.push_str(" \n\t"),
        2 => out.push_str("// c \u{e9}\u{1f600} */\n"),
        _ => out.push_str("/* c // \u{2028} */"),
    }
}

/// Renders `j`: `jsonc` adds comments and trailing commas; plain JSON otherwise.
fn render(j: &Json, jsonc: bool, out: &mut String) {
    let (open, close, deco, len) = match j {
        Json::Null => return out.push_str("null"),
        Json::Bool(b) => return out.push_str(if *b { "true" } else { "false" }),
        Json::Num(n) | Json::Str(n) => return out.push_str(n),
        Json::Arr(items, deco) => ('[', ']', *deco, items.len()),
        Json::Obj(items, deco) => ('{', '}', *deco, items.len()),
    };
    out.push(open);
    for i in 0..len {
        if i > 0 {
            out.push(',');
        }
        if jsonc {
            filler(out, deco, 2);
        }
        match j {
            Json::Arr(items, _) => render(&items[i], jsonc, out),
            Json::Obj(items, _) => {
                out.push_str(&Value::String(items[i].0.clone()).to_string());
                out.push(':');
                render(&items[i].1, jsonc, out);
            }
            _ => {}
        }
    }
    if jsonc {
        if len > 0 && deco & 1 == 1 {
            out.push(',');
        }
        filler(out, deco, 4);
    }
    out.push(close);
}

/// Equal JSON, numbers compared as numbers (`0` and `-0.0` are the same) to one unit
/// in the last place (serde_json's default float parsing may be that far off; Rust's,
/// which jsonc-parser uses, is exact).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

fn text_of(j: &Json, jsonc: bool) -> String {
    let mut out = String::new();
    render(j, jsonc, &mut out);
    out
}

/// A config whose known properties mostly have the right types, so that reading goes
/// on to the variables, runArgs and remoteEnv; other properties are any JSON.
fn typed_config() -> impl Strategy<Value = Json> {
    let s = || var_string().prop_map(|s| Json::Str(Value::String(s).to_string()));
    let strings = || proptest::collection::vec(s(), 0..6).prop_map(|v| Json::Arr(v, 0));
    let env = || {
        proptest::collection::vec(("[A-Z_]{1,6}|.{0,4}", s()), 0..6).prop_map(|kv| Json::Obj(kv, 0))
    };
    let run_args = args().prop_map(|a| {
        Json::Arr(
            a.into_iter()
                .map(|s| Json::Str(Value::String(s).to_string()))
                .collect(),
            0,
        )
    });
    let props = prop_oneof![
        s().prop_map(|v| ("image".to_string(), v)),
        s().prop_map(|v| ("workspaceFolder".to_string(), v)),
        s().prop_map(|v| ("workspaceMount".to_string(), v)),
        s().prop_map(|v| ("remoteUser".to_string(), v)),
        env().prop_map(|v| ("containerEnv".to_string(), v)),
        env().prop_map(|v| ("remoteEnv".to_string(), v)),
        run_args.prop_map(|v| ("runArgs".to_string(), v)),
        strings().prop_map(|v| ("mounts".to_string(), v)),
        strings().prop_map(|v| ("extensions".to_string(), v)),
        strings().prop_map(|v| ("capAdd".to_string(), v)),
        env().prop_map(|v| ("settings".to_string(), v)),
        (key(), json(3)),
    ];
    (proptest::collection::vec(props, 0..10), any::<u8>()).prop_map(|(p, d)| Json::Obj(p, d))
}

/// Nesting at and past jsonc-parser's depth limit (512), closed or not.
fn deep() -> impl Strategy<Value = String> {
    (0usize..1200, any::<bool>(), any::<bool>()).prop_map(|(depth, objects, closed)| {
        let (open, close) = if objects {
            ("{\"a\":", "}")
        } else {
            ("[", "]")
        };
        let mut s = String::from("{\"x\":");
        s.push_str(&open.repeat(depth));
        s.push('1');
        if closed {
            s.push_str(&close.repeat(depth));
            s.push('}');
        }
        s
    })
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn devcontainer_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        bounded(super::devcontainer_json, data);
    }

    #[test]
    fn devcontainer_arbitrary_text(text in any::<String>()) {
        bounded(super::devcontainer_json, text.into_bytes());
    }

    #[test]
    fn devcontainer_any_jsonc(j in json(6)) {
        bounded(super::devcontainer_json, text_of(&j, true).into_bytes());
    }

    #[test]
    fn devcontainer_typed(j in typed_config()) {
        bounded(super::devcontainer_json, text_of(&j, true).into_bytes());
    }

    #[test]
    fn devcontainer_deep(text in deep()) {
        bounded(super::devcontainer_json, text.into_bytes());
    }

    /// A change of one byte of a real-looking config still parses or errors in place.
    #[test]
    fn devcontainer_mutated(j in typed_config(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut data = text_of(&j, true).into_bytes();
        if !data.is_empty() {
            let i = at.index(data.len());
            data[i] = byte;
        }
        bounded(super::devcontainer_json, data);
    }

    /// Comments, trailing commas and whitespace change nothing: the JSONC reads as the
    /// same JSON does with serde_json (duplicate keys: the last wins in both; numbers
    /// compared by value, as `-0` is the integer 0 for jsonc-parser and JavaScript).
    #[test]
    fn jsonc_reads_as_its_json(j in json(5)) {
        let plain = text_of(&j, false);
        if let Ok(want @ Value::Object(_)) = serde_json::from_str::<Value>(&plain) {
            let got = devcontainer::parse_raw(&text_of(&j, true)).map(Value::Object);
            prop_assert!(
                got.as_ref().is_ok_and(|g| same_json(g, &want)),
                "{:?} read as {:?}", want, got
            );
        }
    }

    /// A parse or type error never quotes the file (it may hold a token).
    #[test]
    fn devcontainer_errors_do_not_quote_the_file(
        j in typed_config(),
        key in proptest::sample::select(KEYS),
        wrap in 0u8..4,
        cut in any::<prop::sample::Index>(),
    ) {
        const SECRET: &str = "c0ffee-SECRET-7331";
        let value = match wrap {
            0 => format!("\"{SECRET}\""),
            1 => format!("[\"{SECRET}\"]"),
            2 => format!("{{\"{SECRET}\": \"{SECRET}\"}}"),
            _ => format!("[[{{\"k\": \"{SECRET}\"}}]]"),
        };
        let mut text = text_of(&j, false);
        text.insert_str(1, &format!("\"{key}\": {value}{}", if text.len() > 2 { "," } else { "" }));
        // Cut it anywhere to make a syntax error, or keep it whole for type errors.
        let at = cut.index(text.len() + 1);
        let text = if text.is_char_boundary(at) { &text[..at] } else { &text[..] };
        if let Err(e) = devcontainer::from_text(std::path::Path::new("d.json"), text) {
            let msg = format!("{e:#}");
            prop_assert!(!msg.contains("c0ffee"), "{}", msg);
        }
    }
}

// ---------------------------------------------------------------------------------
// Variables.

proptest! {
    #![proptest_config(config(64))]

    /// Substitution follows the documented rules piece by piece (the model below).
    #[test]
    fn variables_follow_the_rules(pieces in proptest::collection::vec(piece(), 0..8)) {
        let env = |name: &str| match name {
            "HOME" => Some("/home/dev".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let ctx = vars::Context {
            local_workspace_folder: "/src/proj".into(),
            container_workspace_folder: "/workspaces/proj".into(),
            local_env: &env,
        };
        let text: String = pieces.iter().map(|(written, _)| written.as_str()).collect();
        let want: Option<String> = pieces.iter().map(|(_, value)| value.clone()).collect();
        match (vars::substitute_str(&text, &ctx), want) {
            (Ok(got), Some(want)) => prop_assert_eq!(got, want),
            (Err(vars::VarError::NoName(_)), None) => {}
            (got, want) => prop_assert!(false, "{text:?}: got {got:?}, want {want:?}"),
        }
    }

    /// `${containerEnv:...}` never grows a value past what a process can receive.
    #[test]
    fn container_env_is_bounded(s in var_string(), times in 0usize..40) {
        let env = super::container_env();
        let s = s.repeat(times);
        match vars::substitute_container_env(&s, &env) {
            Ok(out) => prop_assert!(out.len() <= vars::MAX_ENV_VALUE_BYTES.max(s.len())),
            Err(e) => prop_assert_eq!(e, vars::VarError::EnvValueTooLong),
        }
    }
}

/// A piece of a string as written and what it becomes (`None`: an error).
fn piece() -> impl Strategy<Value = (String, Option<String>)> {
    let same = |s: &str| (s.to_string(), Some(s.to_string()));
    let to = |s: &str, v: &str| (s.to_string(), Some(v.to_string()));
    prop_oneof![
        "[a-z/ :$é😀]{0,6}".prop_map(|s| (s.clone(), Some(s))),
        Just(to("${localEnv:HOME}", "/home/dev")),
        Just(to("${env:HOME}", "/home/dev")),
        Just(to("${localEnv:NOPE}", "")),
        Just(to("${localEnv:NOPE:dflt}", "dflt")),
        Just(to("${localEnv:NOPE:a:b}", "a")),
        Just(to("${localEnv:EMPTY:dflt}", "")),
        Just(to("${localWorkspaceFolder}", "/src/proj")),
        Just(to("${localWorkspaceFolderBasename}", "proj")),
        Just(to("${containerWorkspaceFolder}", "/workspaces/proj")),
        Just(to("${containerWorkspaceFolderBasename}", "proj")),
        Just(same("${containerEnv:PATH}")),
        Just(same("${containerEnv:PATH:d}")),
        Just(same("${devcontainerId}")),
        Just(same("${unknown}")),
        Just(same("${LOCALENV:HOME}")),
        Just(same("${}")),
        Just(("${localEnv}".to_string(), None)),
        Just(("${env}".to_string(), None)),
    ]
}

// ---------------------------------------------------------------------------------
// runArgs.

/// Every flag devaipod knows, in each of its spellings, and some it does not.
const FLAGS: &[&str] = &[
    "--privileged",
    "--init",
    "--rm",
    "-i",
    "-t",
    "-it",
    "-ti",
    "-d",
    "--interactive",
    "--tty",
    "--detach",
    "-e",
    "--env",
    "--env-file",
    "-l",
    "--label",
    "--cap-add",
    "--cap-drop",
    "--security-opt",
    "--device",
    "--gpus",
    "-u",
    "--user",
    "-w",
    "--workdir",
    "-v",
    "--volume",
    "--mount",
    "--tmpfs",
    "-p",
    "--publish",
    "-m",
    "--memory",
    "--cpus",
    "--shm-size",
    "-h",
    "--hostname",
    "--dns",
    "--add-host",
    "--ulimit",
    "--sysctl",
    "--runtime",
    "--restart",
    "--network",
    "--net",
    "--pid",
    "--ipc",
    "--uts",
    "--userns",
    "--storage-opt",
    "--name",
    "--frobnicate",
    "-",
    "--",
    "-\u{e9}",
    "-\u{301}p",
];

/// Values that are valid for some flag and wrong for others.
fn flag_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("A=1".to_string()),
        Just("A".to_string()),
        Just("=".to_string()),
        Just("1g".to_string()),
        Just("512m".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("99999999999999999999g".to_string()),
        Just("1e308".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("8080:80".to_string()),
        Just("127.0.0.1:8080:80/udp".to_string()),
        Just("0.0.0.0::80".to_string()),
        Just("::1:80:80".to_string()),
        Just("65536".to_string()),
        Just("4096".to_string()),
        Just("cache:/cache:ro".to_string()),
        Just("./data:/data".to_string()),
        Just(".:/w:ro,z".to_string()),
        Just("/:/host".to_string()),
        Just("a:b:c:d".to_string()),
        Just("type=bind,source=/,target=/x".to_string()),
        Just("type=volume,target=/v,readonly".to_string()),
        Just("/scratch:size=1m".to_string()),
        Just("nofile=1024:2048".to_string()),
        Just("nofile=unlimited".to_string()),
        Just("bogus=1".to_string()),
        Just("kernel.msgmax=65536".to_string()),
        Just("net.ipv4.ip_forward=1".to_string()),
        Just("seccomp=unconfined".to_string()),
        Just("label=type:x".to_string()),
        Just("host".to_string()),
        Just("private".to_string()),
        Just("keep-id".to_string()),
        Just("db:10.0.0.2".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("io.devaipod.pod=x".to_string()),
        odd_text(),
    ]
}

/// runArgs as a list: each flag with its value `--x=y`, `--x y`, attached `-xY`, or
/// missing, among stray values.
fn args() -> impl Strategy<Value = Vec<String>> {
    let one =
        (proptest::sample::select(FLAGS), flag_value(), 0u8..5).prop_map(
            |(f, v, form)| match form {
                0 => vec![format!("{f}={v}")],
                1 => vec![f.to_string(), v],
                2 => vec![format!("{f}{v}")],
                3 => vec![f.to_string()],
                _ => vec![v],
            },
        );
    proptest::collection::vec(one, 0..8).prop_map(|v| v.concat())
}

fn nul_ended(args: &[String]) -> Vec<u8> {
    args.iter()
        .flat_map(|a| a.bytes().chain(std::iter::once(0)))
        .collect()
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn run_args_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        bounded(super::run_args, data);
    }

    #[test]
    fn run_args_every_form(args in args()) {
        bounded(super::run_args, nul_ended(&args));
    }

    /// `-e`/`--env` in each spelling sets exactly what it says, the last one winning.
    #[test]
    fn run_args_env_is_read_exactly(
        env in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,5}", ".{0,6}", 0u8..4), 0..6)
    ) {
        let mut args = Vec::new();
        let mut want = std::collections::BTreeMap::new();
        for (k, v, form) in &env {
            let kv = format!("{k}={v}");
            match form {
                0 => args.push(format!("--env={kv}")),
                1 => args.extend(["--env".to_string(), kv]),
                2 => args.push(format!("-e{kv}")),
                _ => args.extend(["-e".to_string(), kv]),
            }
            want.insert(k.clone(), v.clone());
        }
        let got = run_args::parse(&args, "/repo").map(|a| a.env);
        prop_assert_eq!(got, Ok(want));
    }
}

// ---------------------------------------------------------------------------------
// devaipod.toml.

const TABLES: &[&str] = &[
    "",
    "[agent]",
    "[trusted]",
    "[service-gator]",
    "[repos.\"/src/p\"]",
    "[repos.\"\u{e9}\u{1f600}\"]",
    "[agent.credentials.anthropic]",
    "[agent.credentials.\"x y\"]",
    "[agent.credentials.openai]",
    "[agent.opencode]",
    "[agent.opencode.provider.anthropic.options]",
    "[[agent]]",
    "[agent",
    "[unknown]",
];

const TOML_KEYS: &[&str] = &[
    "model",
    "network",
    "allow",
    "secrets",
    "pids_limit",
    "memory_limit",
    "credentials",
    "opencode",
    "trust",
    "scopes",
    "image",
    "allow_wildcard_write",
    "gitlab_host",
    "jira_host",
    "jira_username",
    "base_url",
    "header",
    "prefix",
    "secret",
    "provider.anthropic.options.baseURL",
    "provider.anthropic.options.apiKey",
    "agent.network",
    "\"quoted key\"",
    "'literal'",
    "a.b.c.d.e.f.g.h",
    "=",
];

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("\"allowlist\"".to_string()),
        Just("\"none\"".to_string()),
        Just("\"full\"".to_string()),
        Just("\"*.example.org\"".to_string()),
        Just("\"git.example.com:8443\"".to_string()),
        Just("\"https://api.anthropic.com/v1\"".to_string()),
        Just("\"http://169.254.169.254/\"".to_string()),
        Just("\"x-api-key\"".to_string()),
        Just("\"Bearer \"".to_string()),
        Just("\"ANTHROPIC_API_KEY\"".to_string()),
        Just("\"K=podman-secret\"".to_string()),
        Just("\"16g\"".to_string()),
        Just("\"63m\"".to_string()),
        Just("\"github:me/project:create-draft\"".to_string()),
        Just("64".to_string()),
        Just("63".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("0x7f".to_string()),
        Just("1_000".to_string()),
        Just("+1".to_string()),
        Just("inf".to_string()),
        Just("nan".to_string()),
        Just("1e400".to_string()),
        Just("-0.0".to_string()),
        Just("true".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("'''multi\nline'''".to_string()),
        Just("\"\"\"a\\\n  b\"\"\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"\\U0010FFFF\"".to_string()),
        odd_text().prop_map(|s| toml_string(&s)),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6)
                .prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec((proptest::sample::select(TOML_KEYS), inner), 0..5).prop_map(
                |v| {
                    let kv: Vec<String> =
                        v.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                    format!("{{ {} }}", kv.join(", "))
                }
            ),
        ]
    })
}

/// A devaipod.toml: tables from the real ones (and some not), keys from the real ones
/// (and some not), values of any type.
fn toml_doc() -> impl Strategy<Value = String> {
    let entry = (
        prop_oneof![3 => proptest::sample::select(TOML_KEYS).prop_map(str::to_string), 1 => odd_text()],
        toml_value(),
    );
    let table = (
        proptest::sample::select(TABLES),
        proptest::collection::vec(entry, 0..6),
    );
    proptest::collection::vec(table, 0..6).prop_map(|tables| {
        let mut out = String::new();
        for (header, entries) in tables {
            out.push_str(header);
            out.push('\n');
            for (k, v) in entries {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out
    })
}

/// Nested arrays and inline tables at and past the toml crate's recursion limit (80).
fn toml_deep() -> impl Strategy<Value = String> {
    (0usize..300, any::<bool>(), any::<bool>()).prop_map(|(depth, tables, closed)| {
        let (open, close) = if tables { ("{ a = ", " }") } else { ("[", "]") };
        let mut s = format!("[agent.opencode]\nx = {}1", open.repeat(depth));
        if closed {
            s.push_str(&close.repeat(depth));
        }
        s.push('\n');
        s
    })
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn toml_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        bounded(super::devaipod_toml, data);
    }

    #[test]
    fn toml_arbitrary_text(text in any::<String>()) {
        bounded(super::devaipod_toml, text.into_bytes());
    }

    #[test]
    fn toml_documents(doc in toml_doc()) {
        bounded(super::devaipod_toml, doc.into_bytes());
    }

    #[test]
    fn toml_deep_nesting(doc in toml_deep()) {
        bounded(super::devaipod_toml, doc.into_bytes());
    }

    /// A secret entry that is not a name is refused without repeating it (it may be the
    /// key itself, written where its name belongs).
    #[test]
    fn secret_entries_are_not_repeated(
        before in "[A-Za-z0-9_=. -]{0,4}",
        after in "[A-Za-z0-9_=. -]{0,4}",
        place in 0u8..3,
    ) {
        let entry = format!("{before}sk-c0ffee-7331{after}");
        let text = match place {
            0 => format!("[agent]\nsecrets = [{}]\n", toml_string(&entry)),
            1 => format!("[trusted]\nsecrets = [{}]\n", toml_string(&entry)),
            _ => format!(
                "[agent.credentials.anthropic]\nbase_url = \"https://api.anthropic.com/v1\"\nheader = \"x-api-key\"\nsecret = {}\n",
                toml_string(&entry)
            ),
        };
        let file = std::path::Path::new("devaipod.toml");
        let err = match crate::config::parse(&text) {
            Err(e) => Some(e),
            Ok(c) => c.secret_lists(file).err().map(|e| format!("{e:#}")),
        };
        if let Some(e) = err {
            prop_assert!(!e.contains("c0ffee"), "{}", e);
        }
    }
}

// ---------------------------------------------------------------------------------
// The cargo-fuzz seeds and regressions, on stable too.

/// Every file of `fuzz/corpus/TARGET/` and `fuzz/regressions/TARGET/` (the inputs
/// cargo-fuzz starts from and the ones that once failed) reads without a panic here,
/// so a regression stays checked on machines without nightly.
#[test]
fn fuzz_seeds_and_regressions() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let targets: [(&str, Reader); 3] = [
        ("devcontainer_json", super::devcontainer_json),
        ("run_args", super::run_args),
        ("devaipod_toml", super::devaipod_toml),
    ];
    let mut read = 0;
    for (target, reader) in targets {
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a fuzz input").path();
                // Shown with the failure, if this input is the one.
                eprintln!("fuzz input {}", path.display());
                bounded(reader, std::fs::read(&path).expect("reading a fuzz input"));
                read += 1;
            }
        }
    }
    // The seeds of each target and the run_args regressions at least.
    assert!(
        read >= 20,
        "only {read} fuzz inputs found under {}",
        fuzz.display()
    );
}

// ---------------------------------------------------------------------------------
// Peak memory and time at the size limit.

/// The most a reader's process may hold at its peak (resident set, VmHWM).
const PEAK_RSS_BYTES: u64 = 256 << 20;

/// Inputs as large as the limit allows, of the shapes that cost a reader the most
/// memory or time: many small values, nesting at the limit, many keys, variables that
/// multiply a long host value, long lists checked for duplicates.
fn worst_case(name: &str) -> (Reader, Vec<u8>) {
    let dc = super::DEVCONTAINER_MAX_BYTES;
    let toml = super::DEVAIPOD_TOML_MAX_BYTES;
    // `head`, then `item(i)` while it fits, then `tail`: at most `limit` bytes.
    let fill = |limit: usize, head: &str, item: &dyn Fn(usize) -> String, tail: &str| {
        let mut out = head.to_string();
        for i in 0.. {
            let next = item(i);
            if out.len() + next.len() + tail.len() > limit {
                break;
            }
            out.push_str(&next);
        }
        out.push_str(tail);
        out.into_bytes()
    };
    let nested = format!("{}{},", "[".repeat(511), "]".repeat(511));
    match name {
        "json-objects" => (
            super::devcontainer_json,
            fill(dc, "{\"a\":[", &|_| "{\"k\":0},".into(), "0]}"),
        ),
        "json-arrays" => (
            super::devcontainer_json,
            fill(dc, "{\"a\":[", &|_| "[],".into(), "0]}"),
        ),
        "json-nested" => (
            super::devcontainer_json,
            fill(dc, "{\"a\":[", &|_| nested.clone(), "0]}"),
        ),
        "json-keys" => (
            super::devcontainer_json,
            fill(dc, "{", &|i| format!("\"k{i}\":0,"), "\"image\":\"x\"}"),
        ),
        "json-local-env" => (
            super::devcontainer_json,
            fill(
                dc,
                "{\"containerEnv\":{",
                &|i| format!("\"K{i}\":\"${{localEnv:LONG}}\","),
                "\"Z\":\"\"}}",
            ),
        ),
        "json-container-env" => (
            super::devcontainer_json,
            fill(
                dc,
                "{\"remoteEnv\":{",
                &|i| format!("\"K{i}\":\"${{containerEnv:LONG}}\","),
                "\"Z\":\"\"}}",
            ),
        ),
        "run-args-mounts" => (
            super::run_args,
            fill(dc, "", &|i| format!("-v\0v{i}:/m{i}\0"), ""),
        ),
        "run-args-env" => (
            super::run_args,
            fill(dc, "", &|i| format!("-eK{i}=V\0"), ""),
        ),
        "toml-tables" => (
            super::devaipod_toml,
            fill(
                toml,
                "",
                &|i| format!("[repos.\"/p{i}\"]\ntrust = true\n"),
                "",
            ),
        ),
        "toml-inline" => (
            super::devaipod_toml,
            fill(
                toml,
                "[agent.opencode]\n",
                &|i| format!("k{i} = {{ a = [1, {{ b = \"x\" }}] }}\n"),
                "",
            ),
        ),
        "toml-allow" => (
            super::devaipod_toml,
            fill(
                toml,
                "[agent]\nallow = [",
                &|i| format!("\"h{i}.example\","),
                "]\n",
            ),
        ),
        "toml-secrets" => (
            super::devaipod_toml,
            fill(
                toml,
                "[agent]\nsecrets = [",
                &|i| format!("\"K{i}\","),
                "]\n",
            ),
        ),
        other => panic!("no worst case named {other}"),
    }
}

const WORST_CASES: &[&str] = &[
    "json-objects",
    "json-arrays",
    "json-nested",
    "json-keys",
    "json-local-env",
    "json-container-env",
    "run-args-mounts",
    "run-args-env",
    "toml-tables",
    "toml-inline",
    "toml-allow",
    "toml-secrets",
];

/// Each worst case runs in a child process (this test binary, running only
/// [`rss_probe`]), so that its peak resident set is its own; two at a time.
#[test]
fn peak_memory_and_time_at_the_size_limit() {
    let exe = std::env::current_exe().expect("the test binary");
    for pair in WORST_CASES.chunks(2) {
        let children: Vec<_> = pair
            .iter()
            .map(|case| {
                let child = std::process::Command::new(&exe)
                    .args(["--exact", "fuzzing::props::rss_probe", "--ignored"])
                    .args(["--nocapture", "--test-threads=1"])
                    .env("DEVAIPOD_RSS_PROBE", case)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("running the probe");
                (case, child)
            })
            .collect();
        for (case, child) in children {
            let out = child.wait_with_output().expect("the probe's output");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{case}: {stdout}");
            let peak: u64 = stdout
                .lines()
                .find_map(|l| l.strip_prefix("rss-probe peak bytes: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("{case}: no peak reported: {stdout}"));
            assert!(
                peak < PEAK_RSS_BYTES,
                "{case}: peak resident set {} MiB, over {} MiB",
                peak >> 20,
                PEAK_RSS_BYTES >> 20
            );
        }
    }
}

/// One worst case (`DEVAIPOD_RSS_PROBE`), within [`DEADLINE`]; prints the process's
/// peak resident set.
#[test]
#[ignore = "run by peak_memory_and_time_at_the_size_limit, in a child process of its own"]
fn rss_probe() {
    let case = std::env::var("DEVAIPOD_RSS_PROBE").expect("DEVAIPOD_RSS_PROBE names the case");
    let (reader, data) = worst_case(&case);
    let started = std::time::Instant::now();
    bounded(reader, data);
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    println!("rss-probe {case}: {:?}", started.elapsed());
    println!("rss-probe peak bytes: {}", kib << 10);
}
