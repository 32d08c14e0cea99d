//! `just bench-scale [N] [names|all]`: how many pods this machine holds (not CI).
//!
//! Starts workspaces of one repo with the bundled image, ten `up`s at a time, until N
//! (default 50) are up, the first `up` fails, or the time budget passes
//! (`DEVAIPOD_BENCH_SCALE_MINUTES`, default 20: no batch starts after it). Prints, for
//! docs/benchmarks.md:
//! - each batch's wall time, with the host's available memory, the most inotify
//!   instances one uid holds and the number of tasks, each at its peak during the batch;
//! - the memory of each container of a pod (cgroup memory from `podman stats`, by role:
//!   workspace, agent, proxy, gator, the pod's infra), median and max over the pods, and
//!   the host's MemAvailable drop per pod (conmon and the kernel's share included);
//! - `list --json` with every pod up (median of 5; target < 0.15 s);
//! - deleting them all in one command (target < 15 s): `delete NAME...` by default,
//!   `delete --all` with `all` (refused when the engine holds workspaces the bench did
//!   not make: `--all` would delete them too);
//! - which system limit stopped it, if one did: the failed `up`'s error and the
//!   kernel's new messages (dmesg) read for inotify, pids and memory, and the counters
//!   above against their limits.
//!
//! Everything it made is deleted at the end, on a failure too; workspaces a killed run
//! left (label `devaipod.bench=scale`) are deleted first. Run as root (`just
//! bench-scale` does): dmesg and every process's file descriptors are read.

use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{IMAGE, devaipod, make_repo, median, podman, run};

const LABEL: &str = "devaipod.bench=scale";
const BATCH: usize = 10;
/// How often the counters are sampled while a batch runs.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

fn name_of(i: usize) -> String {
    format!("scale-{i:02}")
}

/// A number from a /proc or /sys file (first word).
fn read_number(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A field of /proc/meminfo, in KiB.
fn meminfo_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The system's limits that pods use up.
struct Limits {
    inotify_instances: u64,
    pid_max: u64,
    threads_max: u64,
    mem_total_kib: u64,
}

impl Limits {
    fn read() -> Self {
        Self {
            inotify_instances: read_number("/proc/sys/fs/inotify/max_user_instances"),
            pid_max: read_number("/proc/sys/kernel/pid_max"),
            threads_max: read_number("/proc/sys/kernel/threads-max"),
            mem_total_kib: meminfo_kib("MemTotal"),
        }
    }

    /// Tasks (threads) the system allows at most.
    fn tasks_max(&self) -> u64 {
        self.pid_max.min(self.threads_max)
    }
}

/// What is in use now: available memory, the inotify instances of the uid holding the
/// most, and the tasks.
#[derive(Clone, Copy, Debug)]
struct Usage {
    mem_available_kib: u64,
    inotify_uid: u32,
    inotify: u64,
    tasks: u64,
}

impl Usage {
    fn read() -> Self {
        let mut by_uid: BTreeMap<u32, u64> = BTreeMap::new();
        let mut tasks = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let path = entry.path();
            let is_pid = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            if !is_pid {
                continue;
            }
            tasks += std::fs::read_dir(path.join("task"))
                .map(|d| d.count() as u64)
                .unwrap_or(0);
            // inotify instances count against the real uid (in the initial namespace).
            let Some(uid) = std::fs::read_to_string(path.join("status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|v| v.split_whitespace().next()?.parse().ok())
                })
            else {
                continue;
            };
            let n = std::fs::read_dir(path.join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| t.as_os_str() == "anon_inode:inotify")
                })
                .count() as u64;
            *by_uid.entry(uid).or_default() += n;
        }
        let (inotify_uid, inotify) = by_uid
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .unwrap_or_default();
        Self {
            mem_available_kib: meminfo_kib("MemAvailable"),
            inotify_uid,
            inotify,
            tasks,
        }
    }

    /// The worst of two samples: least memory, most inotify instances and tasks.
    fn worst(self, other: Self) -> Self {
        let (inotify_uid, inotify) = if other.inotify > self.inotify {
            (other.inotify_uid, other.inotify)
        } else {
            (self.inotify_uid, self.inotify)
        };
        Self {
            mem_available_kib: self.mem_available_kib.min(other.mem_available_kib),
            inotify_uid,
            inotify,
            tasks: self.tasks.max(other.tasks),
        }
    }
}

fn gib(kib: u64) -> f64 {
    kib as f64 / (1024.0 * 1024.0)
}

/// The kernel's messages (an error when dmesg cannot be read).
fn dmesg() -> Result<Vec<String>, String> {
    let o = Command::new("dmesg")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dmesg: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "dmesg failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Which limit the failed `up`s' `errors` and the kernel's new messages point at.
fn diagnose(errors: &str, kernel: &[String], peak: &Usage, limits: &Limits) -> String {
    let errors = errors.to_lowercase();
    let kernel = kernel.join("\n").to_lowercase();
    let any = |words: &[&str]| {
        words
            .iter()
            .any(|w| errors.contains(w) || kernel.contains(w))
    };
    if any(&["inotify"]) || peak.inotify >= limits.inotify_instances {
        return format!(
            "inotify instances: uid {} held {} of fs.inotify.max_user_instances = {}",
            peak.inotify_uid, peak.inotify, limits.inotify_instances
        );
    }
    if any(&[
        "out of memory",
        "oom-kill",
        "oom_reaper",
        "cannot allocate memory",
    ]) || peak.mem_available_kib < limits.mem_total_kib / 20
    {
        return format!(
            "memory: {:.1} GiB of {:.1} GiB available at the lowest",
            gib(peak.mem_available_kib),
            gib(limits.mem_total_kib)
        );
    }
    if any(&[
        "fork rejected",
        "resource temporarily unavailable",
        "cannot fork",
        "pids",
    ]) || peak.tasks * 100 >= limits.tasks_max() * 95
    {
        return format!(
            "pids: {} tasks of at most {} (kernel.pid_max {}, kernel.threads-max {})",
            peak.tasks,
            limits.tasks_max(),
            limits.pid_max,
            limits.threads_max
        );
    }
    if any(&["too many open files"]) {
        return "open files (RLIMIT_NOFILE): see the errors above".into();
    }
    if any(&["did not answer within"]) {
        return "no system limit: an agent did not answer in time (CPU, with this many \
                opencode servers starting at once)"
            .into();
    }
    "no system limit recognised: see the errors above".into()
}

/// A size as podman stats prints it ("352.3kB", "1.2GB", "296KiB"), in bytes.
fn parse_size(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = s.split_at(split);
    let factor = match unit {
        "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number.trim().parse::<f64>().ok()? * factor)
}

/// The memory of every running container of the bench's pods, by role: bytes, one
/// entry per pod.
fn memory_by_role() -> BTreeMap<String, Vec<f64>> {
    #[derive(serde::Deserialize)]
    struct Ps {
        #[serde(rename = "Id")]
        id: String,
        #[serde(rename = "Names")]
        names: Vec<String>,
        #[serde(rename = "PodName", default)]
        pod_name: String,
        #[serde(rename = "IsInfra", default)]
        is_infra: bool,
    }
    #[derive(serde::Deserialize)]
    struct Stat {
        id: String,
        mem_usage: String,
    }
    let ps: Vec<Ps> = serde_json::from_str(&podman(&["ps", "--pod", "--format", "json"]))
        .expect("podman ps JSON");
    let stats: Vec<Stat> =
        serde_json::from_str(&podman(&["stats", "--no-stream", "--format", "json"]))
            .expect("podman stats JSON");
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for c in ps
        .iter()
        .filter(|c| c.pod_name.starts_with("devaipod-scale-"))
    {
        let role = if c.is_infra {
            "infra".to_string()
        } else {
            let name = c.names.first().map(String::as_str).unwrap_or_default();
            name.strip_prefix(&format!("{}-", c.pod_name))
                .unwrap_or(name)
                .to_string()
        };
        let Some(stat) = stats.iter().find(|s| c.id.starts_with(&s.id)) else {
            continue;
        };
        let used = stat.mem_usage.split('/').next().unwrap_or_default();
        if let Some(bytes) = parse_size(used) {
            out.entry(role).or_default().push(bytes);
        }
    }
    out
}

fn median_f(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The bench's workspaces that exist (by label).
fn existing() -> Vec<String> {
    podman(&[
        "pod",
        "ps",
        "--filter",
        &format!("label={LABEL}"),
        "--format",
        "{{index .Labels \"io.devaipod.pod\"}}",
    ])
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_string)
    .collect()
}

/// Deletes the bench's workspaces with `delete --force` (what a failure leaves).
fn delete_leftovers() {
    let names = existing();
    if names.is_empty() {
        return;
    }
    println!("deleting {} workspaces of the bench", names.len());
    let mut cmd = Command::new(devaipod());
    cmd.args(["delete", "--force"]).args(&names);
    let o = cmd.stdin(Stdio::null()).output().expect("devaipod runs");
    if !o.status.success() {
        eprintln!(
            "deleting the bench's workspaces failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Deletes what the bench made when it ends, however it ends (but SIGKILL).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_leftovers();
    }
}

/// Waits for `children`, sampling the counters meanwhile: their outputs and the worst
/// sample.
fn wait_sampling(children: Vec<Child>, mut peak: Usage) -> (Vec<Output>, Usage) {
    let mut children: Vec<(Child, bool)> = children.into_iter().map(|c| (c, false)).collect();
    loop {
        peak = peak.worst(Usage::read());
        for (c, done) in &mut children {
            if !*done {
                *done = c.try_wait().expect("wait").is_some();
            }
        }
        if children.iter().all(|(_, done)| *done) {
            break;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let outputs = children
        .into_iter()
        .map(|(c, _)| c.wait_with_output().expect("wait"))
        .collect();
    (outputs, peak)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let target: usize = match args.first() {
        Some(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("the number of pods must be a number, not {n:?}")),
        None => 50,
    };
    let delete_all = match args.get(1).map(String::as_str) {
        None | Some("names") => false,
        Some("all") => true,
        Some(other) => panic!("the delete mode is `names` or `all`, not {other:?}"),
    };
    let minutes: u64 = std::env::var("DEVAIPOD_BENCH_SCALE_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(20);
    let reserve_gib: u64 = std::env::var("DEVAIPOD_BENCH_SCALE_RESERVE_GIB")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(2);
    assert!(
        nix::unistd::geteuid().is_root(),
        "run the benchmark as root (just bench-scale does)"
    );
    let limits = Limits::read();
    println!(
        "devaipod bench-scale: up to {target} pods, {BATCH} at a time, image {IMAGE}, budget {minutes} min"
    );
    println!(
        "{}; {} cores; {:.1} GiB; {}; fs.inotify.max_user_instances {}, kernel.pid_max {}, kernel.threads-max {}",
        run(&mut Command::new("date")).trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        gib(limits.mem_total_kib),
        podman(&["--version"]).trim(),
        limits.inotify_instances,
        limits.pid_max,
        limits.threads_max
    );
    delete_leftovers();
    let _cleanup = Cleanup;
    let kernel_before = dmesg().map(|l| l.len());
    let repo = make_repo();
    let repo_path = repo.path().to_string_lossy().into_owned();
    let start = Instant::now();
    let before = Usage::read();
    let budget = Duration::from_secs(minutes * 60);

    println!();
    println!(
        "| batch | pods | wall time | MemAvailable (lowest) | inotify instances (most of one uid) | tasks (most) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut made = 0;
    let mut stopped = None;
    let mut peak = before;
    while made < target {
        if start.elapsed() > budget {
            stopped = Some(format!("the time budget ({minutes} min) passed"));
            break;
        }
        let batch: Vec<String> = (made..target.min(made + BATCH)).map(name_of).collect();
        // Other work on the machine keeps its memory: no batch starts that would leave
        // less than the reserve, by what each pod took so far.
        let now = Usage::read();
        if made > 0 {
            let per_pod = before
                .mem_available_kib
                .saturating_sub(now.mem_available_kib)
                / made as u64;
            let need = per_pod * batch.len() as u64 + reserve_gib * 1024 * 1024;
            if now.mem_available_kib < need {
                stopped = Some(format!(
                    "memory: {:.1} GiB available, the next {} pods would leave less than the {reserve_gib} GiB reserve (DEVAIPOD_BENCH_SCALE_RESERVE_GIB)",
                    gib(now.mem_available_kib),
                    batch.len()
                ));
                break;
            }
        }
        let t = Instant::now();
        let children = batch
            .iter()
            .map(|n| {
                Command::new(devaipod())
                    .args(["up", &repo_path, "--name", n, "--label", LABEL])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("devaipod runs")
            })
            .collect();
        let (outputs, batch_peak) = wait_sampling(children, Usage::read());
        let wall = t.elapsed();
        peak = peak.worst(batch_peak);
        let ok = outputs.iter().filter(|o| o.status.success()).count();
        println!(
            "| {} | {}-{}{} | {:.1} s | {:.1} GiB | {} | {} |",
            made / BATCH + 1,
            made + 1,
            made + batch.len(),
            if ok == batch.len() {
                String::new()
            } else {
                format!(" ({} failed)", batch.len() - ok)
            },
            wall.as_secs_f64(),
            gib(batch_peak.mem_available_kib),
            match batch_peak.inotify {
                0 => "0".to_string(),
                n => format!("{n} (uid {})", batch_peak.inotify_uid),
            },
            batch_peak.tasks
        );
        made += ok;
        if ok < batch.len() {
            let errors: String = batch
                .iter()
                .zip(&outputs)
                .filter(|(_, o)| !o.status.success())
                .map(|(n, o)| {
                    let err = String::from_utf8_lossy(&o.stderr);
                    let tail: Vec<&str> = err.lines().rev().take(6).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    format!("{n}: {}\n", tail.join("\n    "))
                })
                .collect();
            let kernel = match (&kernel_before, dmesg()) {
                (Ok(n), Ok(lines)) => lines.into_iter().skip(*n).collect(),
                (Err(e), _) => vec![format!("(kernel messages unread: {e})")],
                (_, Err(e)) => vec![format!("(kernel messages unread: {e})")],
            };
            println!();
            println!("failed ups:\n{errors}");
            let relevant: Vec<&String> = kernel
                .iter()
                .filter(|l| {
                    let l = l.to_lowercase();
                    ["oom", "memory", "inotify", "fork", "pids", "unread"]
                        .iter()
                        .any(|w| l.contains(w))
                })
                .collect();
            if !relevant.is_empty() {
                println!("kernel messages since the start:");
                for l in &relevant {
                    println!("    {l}");
                }
            }
            stopped = Some(diagnose(&errors, &kernel, &batch_peak, &limits));
            break;
        }
    }
    println!();
    println!(
        "{made} pods up in {:.0} s; stopped by: {}",
        start.elapsed().as_secs_f64(),
        stopped
            .as_deref()
            .unwrap_or("nothing (the target was reached)")
    );
    if made == 0 {
        return;
    }

    println!();
    println!("| container | median | max | pods |");
    println!("|---|---|---|---|");
    let mut by_role = memory_by_role();
    let mut total = 0.0;
    for role in ["workspace", "agent", "proxy", "gator", "infra"] {
        let Some(v) = by_role.get_mut(role) else {
            continue;
        };
        let n = v.len();
        let m = median_f(v);
        total += m;
        println!(
            "| {role} | {:.1} MB | {:.1} MB | {n} |",
            m / 1e6,
            v[n - 1] / 1e6
        );
    }
    println!("| a pod (sum of the medians) | {:.1} MB | | |", total / 1e6);
    let after = Usage::read();
    println!(
        "host MemAvailable: {:.2} GiB before, {:.2} GiB with {made} pods: {:.0} MB per pod",
        gib(before.mem_available_kib),
        gib(after.mem_available_kib),
        (before
            .mem_available_kib
            .saturating_sub(after.mem_available_kib)) as f64
            * 1024.0
            / 1e6
            / made as f64
    );

    let mut list = Vec::new();
    let mut listed = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let out = run(Command::new(devaipod()).args(["list", "--json"]));
        list.push(t.elapsed());
        let v: serde_json::Value = serde_json::from_str(&out).expect("list --json");
        listed = v.as_array().map_or(0, Vec::len);
    }
    let l = median(&mut list);
    // The floor: the podman CLI's own two listings (what devaipod asks the service
    // for), at once.
    let mut floor = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let filter = "label=io.devaipod.pod";
        let children: Vec<Child> = [
            vec!["pod", "ps", "--filter", filter, "--format", "json"],
            vec!["ps", "-a", "--filter", filter, "--format", "json"],
        ]
        .iter()
        .map(|args| {
            Command::new("podman")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("podman runs")
        })
        .collect();
        for mut c in children {
            assert!(c.wait().expect("wait").success(), "podman's listing failed");
        }
        floor.push(t.elapsed());
    }
    let f = median(&mut floor);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!("load average now: {}", load.join(" "));
    println!("| measure | devaipod | floor | target | |");
    println!("|---|---|---|---|---|");
    println!(
        "| list --json, {listed} pods | {:.3} s | {:.3} s (podman pod ps + ps -a) | < 0.15 s | {} |",
        l.as_secs_f64(),
        f.as_secs_f64(),
        verdict(l < Duration::from_millis(150))
    );

    let names: Vec<String> = existing();
    let mut cmd = Command::new(devaipod());
    let how = if delete_all {
        let listed: serde_json::Value =
            serde_json::from_str(&run(Command::new(devaipod()).args(["list", "--json"])))
                .expect("list --json");
        let others: Vec<&str> = listed
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str())
            .filter(|n| !names.iter().any(|m| m == n))
            .collect();
        assert!(
            others.is_empty(),
            "delete --all would delete workspaces the bench did not make: {others:?}; run without `all`"
        );
        cmd.args(["delete", "--all"]);
        "delete --all"
    } else {
        cmd.arg("delete").args(&names);
        "delete NAME..."
    };
    let t = Instant::now();
    let o = cmd.stdin(Stdio::null()).output().expect("devaipod runs");
    let d = t.elapsed();
    assert!(
        o.status.success(),
        "{how} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    println!(
        "| {how} of {} pods | {:.1} s ({:.2} s a pod) | | < 15 s | {} |",
        names.len(),
        d.as_secs_f64(),
        d.as_secs_f64() / names.len().max(1) as f64,
        verdict(d < Duration::from_secs(15))
    );
    let left = existing();
    assert!(left.is_empty(), "{how} left {left:?}");
}
