//! `runArgs`: the `docker run` flags a devcontainer.json passes, each mapped onto the
//! workspace container or the pod, or refused with the reason. None is dropped
//! silently; an unknown flag is an error naming it. docs/devcontainer.md has the table.

use std::collections::BTreeMap;

use serde::Serialize;

use super::consent::{BindFrom, Consent, Origin};
use super::{MountKind, MountSpec, PortSpec};

/// A resource limit (`--ulimit nofile=1024:2048`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// What `runArgs` asks for, sorted by where it goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RunArgs {
    pub env: BTreeMap<String, String>,
    /// `--env-file` paths (read by `up`, relative to the repo folder).
    pub env_files: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub privileged: bool,
    pub devices: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub mounts: Vec<MountSpec>,
    pub ports: Vec<PortSpec>,
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub shm_size: Option<i64>,
    pub hostname: Option<String>,
    pub dns: Vec<String>,
    pub add_hosts: Vec<String>,
    pub ulimits: Vec<Ulimit>,
    pub sysctls: BTreeMap<String, String>,
    pub runtime: Option<String>,
    pub init: Option<bool>,
    pub gpus: Option<String>,
    pub warnings: Vec<String>,
    /// Settings that widen access: applied only with the user's consent.
    pub needs_trust: Vec<Consent>,
}

/// A size as docker writes it: `512`, `64k`, `512m`, `2g` (also `mb`, `gb`), read with
/// [`crate::size::parse_size`]; docker refuses a size below one byte.
pub(crate) fn parse_docker_size(s: &str) -> Option<i64> {
    crate::size::parse_size(s)
        .ok()
        .filter(|v| *v >= 1)
        .and_then(|v| i64::try_from(v).ok())
}

fn ulimit(v: &str) -> Result<Ulimit, String> {
    let bad = || format!("runArgs: --ulimit {v}: write NAME=SOFT[:HARD], e.g. nofile=1024:4096");
    let (name, limits) = v.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let num = |x: &str| -> Result<i64, String> {
        if x == "-1" || x == "unlimited" {
            Ok(-1)
        } else {
            x.parse().map_err(|_| bad())
        }
    };
    const KNOWN: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if !KNOWN.contains(&name) {
        return Err(format!("runArgs: --ulimit {v}: unknown limit {name:?}"));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft: num(soft)?,
        hard: num(hard)?,
    })
}

/// `-p [IP:][HOST:]CONTAINER[/PROTO]`.
fn publish(v: &str, warnings: &mut Vec<String>) -> Result<PortSpec, String> {
    let bad = || format!("runArgs: -p {v}: write [HOST:]CONTAINER[/tcp|udp]");
    let (spec, proto) = v.split_once('/').unwrap_or((v, "tcp"));
    if proto != "tcp" && proto != "udp" {
        return Err(bad());
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h).filter(|h| !h.is_empty()), *c),
        _ => return Err(bad()),
    };
    if let Some(ip) = ip.filter(|ip| !matches!(*ip, "127.0.0.1" | "localhost" | "")) {
        warnings.push(format!(
            "runArgs: -p {v} is published on 127.0.0.1, not {ip}: devaipod publishes ports on the host's loopback only"
        ));
    }
    let container: u16 = container.parse().map_err(|_| bad())?;
    let host = host
        .map(|h| h.parse::<u16>().map_err(|_| bad()))
        .transpose()?;
    if container == 0 || host == Some(0) {
        return Err(bad());
    }
    if container == super::AGENT_PORT {
        return Err(format!(
            "runArgs: -p {v}: port {container} is the agent's; it is never published"
        ));
    }
    Ok(PortSpec {
        container_port: container,
        host_port: host,
        protocol: proto.into(),
    })
}

/// `-v SRC:DST[:OPTS]`: a named volume, or a host bind (relative sources are taken
/// from `base`, the repo folder).
fn volume(v: &str, base: &str) -> Result<MountSpec, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        _ => return Err(format!("runArgs: -v {v}: write SOURCE:TARGET[:ro]")),
    };
    if !target.starts_with('/') {
        return Err(format!(
            "runArgs: -v {v}: the target must be an absolute path"
        ));
    }
    let read_only = opts.split(',').any(|o| o == "ro" || o == "readonly");
    let text = if source.is_empty() {
        format!("type=volume,target={target}")
    } else if source.starts_with('/') || source.starts_with('.') || source.starts_with('~') {
        let src = if let Some(rel) = source.strip_prefix("./") {
            format!("{}/{rel}", base.trim_end_matches('/'))
        } else if source == "." {
            base.to_string()
        } else {
            source.to_string()
        };
        format!("type=bind,source={src},target={target}")
    } else {
        format!("type=volume,source={source},target={target}")
    };
    let mut m = super::parse_mount(&serde_json::Value::String(text))
        .map_err(|e| format!("runArgs: -v {v}: {e}"))?;
    m.read_only = m.read_only || read_only;
    Ok(m)
}

/// The consent a host bind of runArgs `flag` needs.
fn bind(flag: &'static str, m: &MountSpec) -> Consent {
    Consent::HostBind {
        from: BindFrom::RunArgs { flag },
        source: m.source.clone(),
        target: m.target.clone(),
    }
}

const BOOL_FLAGS: &[&str] = &[
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
];

/// One argument as its flag and the value written with it: `--flag=v`, and short flags
/// as docker reads them: `-p8080`, `-eX=1`, `-e=X=1` (any other argument is all flag).
fn split_flag(arg: &str) -> (String, Option<String>) {
    let (head, written) = match arg.split_once('=') {
        Some((f, v)) if f.starts_with('-') => (f, Some(v)),
        _ => (arg, None),
    };
    let b = arg.as_bytes();
    // Bytes 0 and 1 are ASCII here, so 2 is a character boundary.
    if head.len() > 2 && b[0] == b'-' && b[1].is_ascii_alphanumeric() && !BOOL_FLAGS.contains(&head)
    {
        let value = &arg[2..];
        let value = value.strip_prefix('=').unwrap_or(value);
        return (arg[..2].to_string(), Some(value.to_string()));
    }
    (head.to_string(), written.map(str::to_string))
}

/// Parses `runArgs`. `base` is the repo folder (for relative bind sources).
pub(crate) fn parse(args: &[String], base: &str) -> Result<RunArgs, String> {
    let mut out = RunArgs::default();
    let mut it = args.iter().peekable();
    while let Some(arg) = it.next() {
        let (flag, inline) = split_flag(arg);
        if BOOL_FLAGS.contains(&flag.as_str()) {
            let on = match inline.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => return Err(format!("runArgs: {flag}={v}: write true or false")),
            };
            match flag.as_str() {
                "--privileged" => {
                    out.privileged = on;
                    if on {
                        out.needs_trust.push(Consent::Privileged {
                            from: Origin::RunArgs,
                        });
                    }
                }
                "--init" => out.init = Some(on),
                _ => out.warnings.push(format!(
                    "runArgs: {arg} has no effect: devaipod runs the pod detached and removes it with `devaipod delete`"
                )),
            }
            continue;
        }
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("runArgs: {flag} needs a value")),
            }
        };
        container_flag(&mut out, &flag, &mut value, base)?;
    }
    Ok(out)
}

/// Reads a flag's value: inline (`--flag=v`, `-fv`) or the next argument.
type Value<'a> = &'a mut dyn FnMut() -> Result<String, String>;

/// The flags that shape the workspace container: env, labels, capabilities, security
/// options, devices, user, workdir and mounts; the rest go to [`resource_flag`].
fn container_flag(
    out: &mut RunArgs,
    flag: &str,
    value: Value<'_>,
    base: &str,
) -> Result<(), String> {
    match flag {
        "-e" | "--env" => {
            let v = value()?;
            let Some((k, val)) = v.split_once('=') else {
                return Err(format!(
                    "runArgs: -e {v} would copy {v} from the host environment, which devaipod never does (it may hold a secret); write -e {v}=VALUE"
                ));
            };
            out.env.insert(k.to_string(), val.to_string());
        }
        "--env-file" => out.env_files.push(value()?),
        "-l" | "--label" => {
            let v = value()?;
            let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
            if k.starts_with(super::labels::PREFIX) {
                return Err(format!(
                    "runArgs: --label {k}: labels under {} are devaipod's own",
                    super::labels::PREFIX
                ));
            }
            out.labels.insert(k.to_string(), val.to_string());
        }
        "--cap-add" => {
            let v = value()?;
            out.needs_trust.push(Consent::CapAdd {
                from: Origin::RunArgs,
                cap: v.clone(),
            });
            out.cap_add
                .extend(v.split(',').map(|c| c.to_ascii_uppercase()));
        }
        "--cap-drop" => out
            .cap_drop
            .extend(value()?.split(',').map(|c| c.to_ascii_uppercase())),
        "--security-opt" => {
            let v = value()?;
            security_opt_known(&v).map_err(|e| format!("runArgs: --security-opt: {e}"))?;
            out.needs_trust.push(Consent::SecurityOpt {
                from: Origin::RunArgs,
                option: v.clone(),
            });
            out.security_opt.push(v);
        }
        "--device" => {
            let v = value()?;
            out.needs_trust.push(Consent::Device { device: v.clone() });
            out.devices.push(v);
        }
        "--gpus" => out.gpus = Some(value()?),
        "-u" | "--user" => out.user = Some(value()?),
        "-w" | "--workdir" => {
            let v = value()?;
            if !v.starts_with('/') {
                return Err(format!(
                    "runArgs: -w {v}: the working directory must be absolute"
                ));
            }
            out.workdir = Some(v);
        }
        "-v" | "--volume" => {
            let m = volume(&value()?, base)?;
            if m.kind == MountKind::Bind {
                out.needs_trust.push(bind("-v", &m));
            }
            out.mounts.push(m);
        }
        "--mount" => {
            let v = value()?;
            let m = super::parse_mount(&serde_json::Value::String(v.clone()))
                .map_err(|e| format!("runArgs: --mount {v}: {e}"))?;
            if m.kind == MountKind::Bind {
                out.needs_trust.push(bind("--mount", &m));
            }
            out.mounts.push(m);
        }
        "--tmpfs" => {
            let v = value()?;
            let target = v.split(':').next().unwrap_or_default();
            let m = super::parse_mount(&serde_json::json!({"type": "tmpfs", "target": target}))
                .map_err(|e| format!("runArgs: --tmpfs {v}: {e}"))?;
            out.mounts.push(m);
        }
        _ => return resource_flag(out, flag, value),
    }
    Ok(())
}

/// The flags of resources, ports, names and namespaces, and the refused and unknown
/// ones.
fn resource_flag(out: &mut RunArgs, flag: &str, value: Value<'_>) -> Result<(), String> {
    match flag {
        "-p" | "--publish" => {
            let p = publish(&value()?, &mut out.warnings)?;
            out.ports.push(p);
        }
        "-m" | "--memory" => {
            let v = value()?;
            out.memory = Some(
                parse_docker_size(&v)
                    .ok_or_else(|| format!("runArgs: --memory {v}: not a size such as 4g"))?,
            );
        }
        "--cpus" => {
            let v = value()?;
            out.cpus = Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|c| *c > 0.0)
                    .ok_or_else(|| format!("runArgs: --cpus {v}: not a positive number"))?,
            );
        }
        "--shm-size" => {
            let v = value()?;
            out.shm_size = Some(
                parse_docker_size(&v)
                    .ok_or_else(|| format!("runArgs: --shm-size {v}: not a size such as 1g"))?,
            );
        }
        "-h" | "--hostname" => out.hostname = Some(value()?),
        "--dns" => {
            let v = value()?;
            out.needs_trust.push(Consent::PodNames {
                flag: "--dns".into(),
                value: v.clone(),
            });
            out.dns.push(v);
        }
        "--add-host" => {
            let v = value()?;
            if v.split_once(':').is_none() {
                return Err(format!("runArgs: --add-host {v}: write HOST:IP"));
            }
            out.needs_trust.push(Consent::PodNames {
                flag: "--add-host".into(),
                value: v.clone(),
            });
            out.add_hosts.push(v);
        }
        "--ulimit" => out.ulimits.push(ulimit(&value()?)?),
        "--sysctl" => {
            let v = value()?;
            let Some((k, val)) = v.split_once('=') else {
                return Err(format!("runArgs: --sysctl {v}: write NAME=VALUE"));
            };
            if k.starts_with("net.") {
                return Err(format!(
                    "runArgs: --sysctl {k} is refused: the network namespace is the pod's, shared with the agent"
                ));
            }
            if !(k.starts_with("kernel.") || k.starts_with("fs.mqueue.")) {
                return Err(format!(
                    "runArgs: --sysctl {k} is not namespaced (only kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* are)"
                ));
            }
            out.sysctls.insert(k.to_string(), val.to_string());
        }
        "--runtime" => out.runtime = Some(value()?),
        "--restart" => {
            let v = value()?;
            out.warnings.push(format!(
                "runArgs: --restart {v} has no effect: devaipod starts and stops the pod (`devaipod start`)"
            ));
        }
        _ => return refused_flag(flag, value),
    }
    Ok(())
}

/// The flags devaipod refuses, saying why, and unknown ones.
fn refused_flag(flag: &str, value: Value<'_>) -> Result<(), String> {
    match flag {
        "--network" | "--net" => {
            let v = value()?;
            return Err(format!(
                "runArgs: --network {v} is refused: the pod owns the network namespace, which the agent shares; publish ports with forwardPorts instead"
            ));
        }
        "--pid" | "--ipc" | "--uts" => {
            let v = value()?;
            if v == "host" {
                return Err(format!(
                    "runArgs: {flag}=host is refused: it would share the host's namespace with the workspace"
                ));
            }
            if !matches!(v.as_str(), "private" | "shareable" | "") {
                return Err(format!(
                    "runArgs: {flag}={v} is refused: each container of the pod keeps its own namespace"
                ));
            }
        }
        "--userns" => {
            let v = value()?;
            return Err(format!(
                "runArgs: --userns={v} is refused: the pod's user namespace is devaipod's; keep-id is not needed because the repo is cloned into a volume owned by remoteUser"
            ));
        }
        "--storage-opt" => {
            let v = value()?;
            return Err(format!(
                "runArgs: --storage-opt {v} is refused: per-container storage quotas need rootful XFS with project quotas, which devaipod does not assume"
            ));
        }
        "--name" => {
            let v = value()?;
            return Err(format!(
                "runArgs: --name {v} is refused: devaipod names the pod's containers (use `devaipod up --name`)"
            ));
        }
        other => {
            return Err(format!(
                "runArgs: {other} is not supported by devaipod; remove it (docs/devcontainer.md lists the supported flags)"
            ));
        }
    }
    Ok(())
}

/// `--security-opt` / `securityOpt` values devaipod can apply.
pub(crate) fn security_opt_known(v: &str) -> Result<(), String> {
    let ok = matches!(
        v,
        "seccomp=unconfined"
            | "label=disable"
            | "apparmor=unconfined"
            | "no-new-privileges"
            | "no-new-privileges:true"
            | "no-new-privileges=true"
    ) || v.starts_with("label=type:")
        || v.starts_with("label=level:");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "security option {v:?} is not supported (supported: seccomp=unconfined, label=disable, label=type:T, label=level:L, apparmor=unconfined, no-new-privileges)"
        ))
    }
}

/// The lines of an env file (`KEY=VALUE`, comments and blank lines skipped).
pub(crate) fn parse_env_file(text: &str, path: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "{path}:{}:1: {k:?} has no value; devaipod never copies host environment variables (write NAME=VALUE)",
                i + 1,
                k = line
            ));
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<RunArgs, String> {
        parse(
            &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "/repo",
        )
    }

    #[test]
    fn both_flag_forms_are_read() {
        let a = p(&[
            "--env=A=1",
            "-e",
            "B=2",
            "--label",
            "x=y",
            "-l=z=w",
            "--shm-size=1g",
            "-m",
            "512m",
            "--cpus",
            "1.5",
            "--hostname=box",
            "--dns",
            "10.0.0.1",
            "--add-host=db:10.0.0.2",
            "--ulimit",
            "nofile=1024:2048",
            "--sysctl=kernel.msgmax=65536",
            "-w",
            "/work",
            "-u=dev",
            "--tmpfs",
            "/scratch:size=1m",
            "-p",
            "8080:80",
            "-p=9090",
            "-v",
            "cache:/cache:ro",
            "--init=false",
            "--runtime",
            "crun",
            "--restart=always",
            "-it",
            "--cap-drop=NET_RAW",
        ])
        .expect("valid");
        assert_eq!(a.env.len(), 2);
        assert_eq!(a.labels.len(), 2);
        assert_eq!(a.shm_size, Some(1 << 30));
        assert_eq!(a.memory, Some(512 << 20));
        assert_eq!(a.cpus, Some(1.5));
        assert_eq!(a.hostname.as_deref(), Some("box"));
        assert_eq!(a.dns, ["10.0.0.1"]);
        assert_eq!(a.add_hosts, ["db:10.0.0.2"]);
        assert_eq!(
            a.ulimits,
            [Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            }]
        );
        assert_eq!(a.sysctls.len(), 1);
        assert_eq!(a.workdir.as_deref(), Some("/work"));
        assert_eq!(a.user.as_deref(), Some("dev"));
        assert_eq!(a.mounts.len(), 2);
        assert!(a.mounts[1].read_only);
        assert_eq!(a.ports.len(), 2);
        assert_eq!(a.ports[0].host_port, Some(8080));
        assert_eq!(a.init, Some(false));
        assert_eq!(a.runtime.as_deref(), Some("crun"));
        assert_eq!(a.cap_drop, ["NET_RAW"]);
        assert_eq!(a.warnings.len(), 2, "{:?}", a.warnings);
        // --dns and --add-host reach the whole pod's lookups, the agent's proxy's too.
        let names: Vec<String> = a.needs_trust.iter().map(|c| c.request()).collect();
        assert_eq!(
            names,
            ["runArgs --dns 10.0.0.1", "runArgs --add-host db:10.0.0.2"]
        );
    }

    #[test]
    fn short_flags_carry_their_value_as_docker_reads_them() {
        let a = p(&["-eX=1", "-e=Y=2", "-eZ", "-p8080", "-ti=false", "-l=k=v"]);
        let a = a.expect_err("-eZ copies the host's Z");
        assert!(a.contains("-e Z would copy"), "{a}");
        let a = p(&["-eX=1", "-e=Y=2", "-p8080", "-ti=false", "-l=k=v"]).expect("valid");
        assert_eq!(a.env.get("X").map(String::as_str), Some("1"));
        assert_eq!(a.env.get("Y").map(String::as_str), Some("2"));
        assert_eq!(a.ports[0].container_port, 8080);
        assert_eq!(a.labels.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn non_ascii_arguments_are_refused_not_split() {
        // These panicked: a short flag was cut at byte 2, inside the character.
        for arg in ["-\u{e9}", "a\u{e9}", "-\u{e9}=1", "\u{1f600}x", "-\u{301}p"] {
            let e = p(&[arg]).expect_err(arg);
            let flag = arg.split('=').next().unwrap_or(arg);
            assert!(e.starts_with("runArgs: ") && e.contains(flag), "{e}");
        }
    }

    #[test]
    fn widening_flags_need_consent() {
        let a = p(&[
            "--privileged",
            "--cap-add=SYS_PTRACE",
            "--security-opt",
            "seccomp=unconfined",
            "--device=/dev/fuse",
            "-v",
            "./data:/data",
        ])
        .expect("valid");
        assert_eq!(a.needs_trust.len(), 5, "{:?}", a.needs_trust);
        assert_eq!(a.mounts[0].source, "/repo/data");
    }

    #[test]
    fn refused_and_unknown_flags_name_themselves() {
        for (args, want) in [
            (vec!["--network=host"], "--network host is refused"),
            (vec!["--net", "none"], "is refused"),
            (vec!["--pid=host"], "--pid=host is refused"),
            (vec!["--userns=keep-id"], "keep-id is not needed"),
            (
                vec!["--storage-opt", "size=1G"],
                "--storage-opt size=1G is refused",
            ),
            (vec!["--name", "x"], "--name x is refused"),
            (
                vec!["--sysctl", "net.ipv4.ip_forward=1"],
                "net.ipv4.ip_forward is refused",
            ),
            (vec!["--frobnicate"], "--frobnicate is not supported"),
            (vec!["-e", "HOME"], "never does"),
            (vec!["--memory"], "needs a value"),
            (vec!["-p", "4096:4096"], "the agent's"),
            (vec!["--security-opt=mask=/x"], "not supported"),
            (vec!["--label=io.devaipod.pod=x"], "devaipod's own"),
        ] {
            let e = p(&args).expect_err(want);
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn env_files_skip_comments_and_refuse_bare_names() {
        let m = parse_env_file("# c\nA=1\n\nB= two \n", "f").expect("valid");
        assert_eq!(m.get("B").map(String::as_str), Some(" two"));
        let e = parse_env_file("A=1\nHOME\n", ".env").expect_err("bare");
        assert!(e.starts_with(".env:2:1:"), "{e}");
    }
}
