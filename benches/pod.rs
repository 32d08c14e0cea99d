//! `just bench`: devaipod against the floor, on real Podman with the bundled image.
//!
//! Side by side, alternating, several rounds; prints medians and ratios:
//! - `up` to agent-ready vs the same objects made by hand with the podman CLI (volumes,
//!   a host clone copied in, a pod sharing only net, the workspace with an init, the
//!   agent with the same hardening flags and home volume) and the same readiness wait
//!   polled every 50 ms (target: at most 1.3x);
//! - `delete` vs `podman pod rm -f` (target: under 1 s);
//! - `list --json` with 20 pods (target: under 0.3 s);
//! - devaipod's own peak RSS (target: under 30 MB), measured with the engine behind
//!   `CONTAINER_HOST` so the podman service is not devaipod's child.
//!
//! - hostile sizes in the agent's clone: `delete` with 5000 agent branches, each with a
//!   commit, one of which the host lacks (target: under 2 s), and with a 1 GiB
//!   `.git/packed-refs` (refused; time, and peak RSS under 64 MB);
//!
//! - the latency the agent's proxy adds to a request (target: under 5 ms): the same
//!   HTTP request to the fake internet (tests/net/fake-internet.sh), from the agent
//!   through its proxy and from the workspace directly, 50 times each.
//!
//! Run as root (the floor's readiness wait enters the pod's netns with nsenter).
//! `DEVAIPOD_BENCH_ROUNDS` sets the rounds (default 5).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{IMAGE, devaipod, make_repo, median, podman, run};

const LABEL: &str = "devaipod.bench=1";

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// The floor: what `up` does, by hand with the podman CLI, strictly in sequence.
fn floor_up(name: &str, repo: &Path) {
    let folder = format!(
        "/workspaces/{}",
        repo.file_name().expect("name").to_string_lossy()
    );
    let ws_vol = format!("{name}-workspace");
    let home_vol = format!("{name}-agent-home");
    podman(&["volume", "create", "--label", LABEL, &ws_vol]);
    podman(&["volume", "create", "--label", LABEL, &home_vol]);
    podman(&[
        "pod", "create", "--label", LABEL, "--share", "net", "--name", name,
    ]);
    let ws = format!("{name}-ws");
    let agent = format!("{name}-agent");
    let ws_mount = format!("{ws_vol}:{folder}");
    podman(&[
        "create", "--pod", name, "--name", &ws, "--init", "-v", &ws_mount, "-w", &folder, IMAGE,
        "sleep", "infinity",
    ]);
    podman(&[
        "create",
        "--pod",
        name,
        "--name",
        &agent,
        "--init",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--user",
        "dev",
        "-v",
        &ws_mount,
        "-v",
        &format!("{home_vol}:/home/agent"),
        "-e",
        "HOME=/home/agent",
        "-e",
        "OPENCODE_DISABLE_AUTOUPDATE=1",
        "-w",
        &folder,
        IMAGE,
        "opencode",
        "serve",
        "--hostname",
        "127.0.0.1",
        "--port",
        "4096",
    ]);
    podman(&["pod", "start", name]);
    let clone = tempfile::tempdir().expect("tempdir");
    let dest = clone.path().join("repo");
    run(Command::new("git")
        .args(["clone", "-q", "--no-hardlinks"])
        .arg(repo)
        .arg(&dest));
    run(Command::new("chown").args(["-R", "1000:1000"]).arg(&dest));
    podman(&[
        "cp",
        "--archive=false",
        &format!("{}/.", dest.display()),
        &format!("{ws}:{folder}"),
    ]);
    let pid = podman(&["inspect", "-f", "{{.State.Pid}}", &ws])
        .trim()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args([
                "curl",
                "-sf",
                "-m",
                "1",
                "-o",
                "/dev/null",
                "http://127.0.0.1:4096/global/health",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "floor agent never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn floor_remove_volumes(name: &str) {
    podman(&[
        "volume",
        "rm",
        "-f",
        &format!("{name}-workspace"),
        &format!("{name}-agent-home"),
    ]);
}

/// 20 labelled pods (pod + two created containers each), made directly with podman.
fn make_list_pods(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let name = format!("bench-list-{i}");
            let pod = format!("devaipod-{name}");
            let pod_label = format!("io.devaipod.pod={name}");
            podman(&[
                "pod",
                "create",
                "--label",
                LABEL,
                "--label",
                &pod_label,
                "--label",
                "io.devaipod.repo=/bench",
                "--share",
                "net",
                "--name",
                &pod,
            ]);
            for role in ["workspace", "agent"] {
                podman(&[
                    "create",
                    "--pod",
                    &pod,
                    "--name",
                    &format!("{pod}-{role}"),
                    "--label",
                    LABEL,
                    "--label",
                    &pod_label,
                    "--label",
                    &format!("io.devaipod.role={role}"),
                    IMAGE,
                    "true",
                ]);
            }
            pod
        })
        .collect()
}

/// Runs `cmd` in a child and returns its peak RSS in KiB (children of this process that
/// were waited for: only the measured command and its own reaped children).
fn peak_rss_kib(args: &[&str], container_host: &str) -> i64 {
    peak_rss_kib_exiting(args, container_host, 0)
}

/// [`peak_rss_kib`] of a command that must exit with `code`.
fn peak_rss_kib_exiting(args: &[&str], container_host: &str, code: i32) -> i64 {
    let out = run(Command::new(std::env::current_exe().expect("exe"))
        .arg("--measure-rss")
        .arg(code.to_string())
        .arg(devaipod())
        .args(args)
        .env("CONTAINER_HOST", container_host));
    out.trim().parse().expect("rss")
}

fn measure_rss_main(args: &[String]) {
    let want: i32 = args[0].parse().expect("exit code");
    let status = Command::new(&args[1])
        .args(&args[2..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    assert_eq!(status.code(), Some(want), "{args:?}");
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    println!("{}", usage.max_rss());
}

/// `devaipod exec NAME --container agent -- sh -c SCRIPT` in the agent's clone
/// (`folder`): its stdout.
fn as_agent(name: &str, folder: &str, script: &str) -> String {
    run(Command::new(devaipod()).args([
        "exec",
        name,
        "--container",
        "agent",
        "--",
        "sh",
        "-c",
        &format!("cd {folder} && {script}"),
    ]))
}

/// How many branches the hostile-size measure's agent makes, each with a commit.
const AGENT_BRANCHES: usize = 5000;

/// `up` of `repo` as `name` for a hostile-size measure: the agent's folder, and the
/// commit the pod starts from.
fn up_for_sizes(repo: &Path, name: &str) -> (String, String) {
    let repo_path = repo.to_string_lossy();
    run(Command::new(devaipod()).args(["up", &repo_path, "--name", name, "--label", LABEL]));
    let folder = format!(
        "/workspaces/{}",
        repo.file_name().expect("name").to_string_lossy()
    );
    let base = run(Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "HEAD"]));
    (folder, base.trim().to_string())
}

/// A workspace whose agent made [`AGENT_BRANCHES`] branches, each with a commit of its
/// own, all but one of which the host repo holds too (the same commits, imported with
/// fixed dates on both sides): `delete` checks every one and refuses over the one.
fn many_branches(repo: &Path, name: &str) {
    let (folder, base) = up_for_sizes(repo, name);
    let base = base.as_str();
    let line = "commit refs/heads/%s/%d\\ncommitter b <b@example.invalid> 1700000000 +0000\\ndata 6\\nc%05d\\nfrom %s\\n\\n";
    let import = |skip: usize| {
        format!(
            "i=1; while [ $i -le {AGENT_BRANCHES} ]; do [ $i = {skip} ] || printf '{line}' \"$1\" $i $i {base}; i=$((i + 1)); done | git fast-import --quiet"
        )
    };
    as_agent(name, &folder, &import(0).replace("\"$1\"", "c"));
    // The host's own copy of the same stream, less one commit.
    run(Command::new("sh")
        .args(["-c", &import(AGENT_BRANCHES / 2), "sh", "kept"])
        .current_dir(repo));
}

/// A workspace whose agent's `.git/packed-refs` is 1 GiB.
fn huge_packed_refs(repo: &Path, name: &str) {
    let (folder, base) = up_for_sizes(repo, name);
    let pad = format!("{base} refs/tags/pad");
    let lines = (1usize << 30).div_ceil(pad.len() + 1);
    as_agent(
        name,
        &folder,
        &format!("git pack-refs --all && yes '{pad}' | head -n {lines} >> .git/packed-refs"),
    );
}

/// Runs devaipod `args`, which must exit with `code`: how long it took.
fn timed_exit(args: &[&str], code: i32) -> Duration {
    let t = Instant::now();
    let status = Command::new(devaipod())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("devaipod");
    let took = t.elapsed();
    assert_eq!(status.code(), Some(code), "devaipod {args:?}");
    took
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--measure-rss") {
        measure_rss_main(&args[2..]);
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "run the benchmark as root (just bench does)"
    );
    let rounds: usize = std::env::var("DEVAIPOD_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let repo = make_repo();
    let repo_path = repo.path().to_string_lossy().into_owned();
    let (mut up_d, mut up_f, mut del_d, mut del_f) = (vec![], vec![], vec![], vec![]);
    println!("devaipod bench: {rounds} rounds, image {IMAGE}");
    for i in 0..rounds {
        let dname = format!("bench-up-{i}");
        let fname = format!("bench-floor-{i}");
        // Alternate which goes first, so neither always runs on a warmer engine.
        if i % 2 == 0 {
            up_d.push(timed(|| {
                run(Command::new(devaipod())
                    .args(["up", &repo_path, "--name", &dname, "--label", LABEL]));
            }));
            up_f.push(timed(|| floor_up(&fname, repo.path())));
        } else {
            up_f.push(timed(|| floor_up(&fname, repo.path())));
            up_d.push(timed(|| {
                run(Command::new(devaipod())
                    .args(["up", &repo_path, "--name", &dname, "--label", LABEL]));
            }));
        }
        del_d.push(timed(|| {
            run(Command::new(devaipod()).args(["delete", &dname]));
        }));
        del_f.push(timed(|| {
            podman(&["pod", "rm", "-f", &fname]);
        }));
        floor_remove_volumes(&fname);
        println!(
            "  round {}: up {:.2}s vs floor {:.2}s; delete {:.2}s vs pod rm -f {:.2}s",
            i + 1,
            up_d[i].as_secs_f64(),
            up_f[i].as_secs_f64(),
            del_d[i].as_secs_f64(),
            del_f[i].as_secs_f64()
        );
    }

    // delete of a stopped pod: the unreviewed-commit check starts it to read the
    // agent's clone; --force skips the check.
    let (mut stop_check, mut stop_force) = (vec![], vec![]);
    for i in 0..rounds {
        for force in [false, true] {
            let n = format!("bench-stopped-{i}-{}", u8::from(force));
            run(Command::new(devaipod()).args(["up", &repo_path, "--name", &n, "--label", LABEL]));
            run(Command::new(devaipod()).args(["stop", &n]));
            let mut args = vec!["delete", n.as_str()];
            if force {
                args.push("--force");
            }
            let t = timed(|| {
                run(Command::new(devaipod()).args(&args));
            });
            if force {
                stop_force.push(t);
            } else {
                stop_check.push(t);
            }
        }
    }

    // The agent's clone, hostile sizes: thousands of branches checked, a 1 GiB
    // packed-refs refused (its RSS is measured below, behind CONTAINER_HOST).
    many_branches(repo.path(), "bench-branches");
    let mut branches = vec![];
    for _ in 0..rounds {
        branches.push(timed_exit(&["delete", "bench-branches"], 1));
    }
    run(Command::new(devaipod()).args(["delete", "bench-branches", "--force"]));
    huge_packed_refs(repo.path(), "bench-packed");
    let mut packed = vec![];
    for _ in 0..rounds {
        packed.push(timed_exit(&["delete", "bench-packed"], 1));
    }

    let pods = make_list_pods(20);
    let mut list = vec![];
    for _ in 0..rounds.max(5) {
        list.push(timed(|| {
            run(Command::new(devaipod()).args(["list", "--json"]));
        }));
    }

    // Peak RSS with a bench-owned service behind CONTAINER_HOST.
    let sock_dir = tempfile::tempdir().expect("tempdir");
    let sock = sock_dir.path().join("podman.sock");
    let mut service = Command::new("podman")
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("service");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "service did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let host = format!("unix://{}", sock.display());
    let rss_list = peak_rss_kib(&["list", "--json"], &host);
    let rss_up = peak_rss_kib(
        &["up", &repo_path, "--name", "bench-rss", "--label", LABEL],
        &host,
    );
    run(Command::new(devaipod()).args(["delete", "bench-rss"]));
    let rss_packed = peak_rss_kib_exiting(&["delete", "bench-packed"], &host, 1);
    run(Command::new(devaipod()).args(["delete", "bench-packed", "--force"]));
    let _ = service.kill();
    let _ = service.wait();
    for pod in &pods {
        podman(&["pod", "rm", "-f", pod]);
    }

    let (via_proxy, direct) = proxy_latency(&repo_path);

    let (ud, uf) = (median(&mut up_d), median(&mut up_f));
    let (dd, df) = (median(&mut del_d), median(&mut del_f));
    let l = median(&mut list);
    let ratio = ud.as_secs_f64() / uf.as_secs_f64();
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!("| measure | devaipod (median) | floor (median) | ratio | target | |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| up to agent-ready | {:.2} s | {:.2} s | {ratio:.2}x | <= 1.3x | {} |",
        ud.as_secs_f64(),
        uf.as_secs_f64(),
        verdict(ratio <= 1.3)
    );
    println!(
        "| delete | {:.2} s | {:.2} s (pod rm -f) | {:.2}x | < 1 s | {} |",
        dd.as_secs_f64(),
        df.as_secs_f64(),
        dd.as_secs_f64() / df.as_secs_f64(),
        verdict(dd < Duration::from_secs(1))
    );
    let (sc, sf) = (median(&mut stop_check), median(&mut stop_force));
    println!(
        "| delete, stopped pod (checks the agent's commits) | {:.2} s | {:.2} s (delete --force) | {:.2}x | < 3 s | {} |",
        sc.as_secs_f64(),
        sf.as_secs_f64(),
        sc.as_secs_f64() / sf.as_secs_f64(),
        verdict(sc < Duration::from_secs(3))
    );
    println!(
        "| list --json, 20 pods | {:.3} s | | | < 0.3 s | {} |",
        l.as_secs_f64(),
        verdict(l < Duration::from_millis(300))
    );
    println!(
        "| peak RSS, up | {:.1} MB | | | < 30 MB | {} |",
        rss_up as f64 / 1024.0,
        verdict(rss_up < 30 * 1024)
    );
    println!(
        "| peak RSS, list --json | {:.1} MB | | | < 30 MB | {} |",
        rss_list as f64 / 1024.0,
        verdict(rss_list < 30 * 1024)
    );
    let (b, pk) = (median(&mut branches), median(&mut packed));
    println!(
        "| delete, {AGENT_BRANCHES} agent branches (one commit not on the host: refused) | {:.2} s | | | < 2 s | {} |",
        b.as_secs_f64(),
        verdict(b < Duration::from_secs(2))
    );
    println!(
        "| delete, 1 GiB packed-refs in the agent's clone (refused) | {:.2} s | | | < 2 s | {} |",
        pk.as_secs_f64(),
        verdict(pk < Duration::from_secs(2))
    );
    println!(
        "| peak RSS, delete with a 1 GiB packed-refs | {:.1} MB | | | < 64 MB | {} |",
        rss_packed as f64 / 1024.0,
        verdict(rss_packed < 64 * 1024)
    );
    let added = via_proxy.saturating_sub(direct);
    println!(
        "| one HTTP request, agent through its proxy | {:.2} ms | {:.2} ms (workspace, direct) | +{:.2} ms | < +5 ms | {} |",
        via_proxy.as_secs_f64() * 1000.0,
        direct.as_secs_f64() * 1000.0,
        added.as_secs_f64() * 1000.0,
        verdict(added < Duration::from_millis(5))
    );
}

/// Median time of one HTTP request to the fake internet's allowed.test: from the agent
/// through its proxy, and from the workspace directly (curl's own `time_total`).
fn proxy_latency(repo: &str) -> (Duration, Duration) {
    assert!(
        Path::new("/run/dvpt-inet/hosts").is_file(),
        "the fake internet is not up: `just fake-internet` (just bench does)"
    );
    let config = tempfile::NamedTempFile::new().expect("config");
    std::fs::write(config.path(), "[agent]\nallow = [\"allowed.test\"]\n").expect("write");
    let name = "bench-net";
    run(Command::new(devaipod())
        .args(["up", repo, "--name", name, "--label", LABEL])
        .env("DEVAIPOD_CONFIG", config.path())
        .env("DEVAIPOD_TEST_NET_HOSTS", "/run/dvpt-inet/hosts")
        .env("DEVAIPOD_TEST_NET_CA", "/run/dvpt-inet/ca.pem"));
    let times = |container: &str, url: &str, proxy: bool| -> Duration {
        let flags = if proxy { "" } else { "--noproxy '*'" };
        let out = podman(&[
            "exec",
            container,
            "sh",
            "-c",
            &format!(
                "curl -s {flags} -o /dev/null {url}; for i in $(seq 50); do curl -s {flags} -o /dev/null -w '%{{time_total}}\\n' {url}; done"
            ),
        ]);
        let mut v: Vec<Duration> = out
            .lines()
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64)
            .collect();
        assert_eq!(v.len(), 50, "{container}: {out}");
        median(&mut v)
    };
    let via = times(
        &format!("devaipod-{name}-agent"),
        "http://allowed.test/",
        true,
    );
    let direct = times(
        &format!("devaipod-{name}-workspace"),
        "http://198.51.100.10/",
        false,
    );
    run(Command::new(devaipod()).args(["delete", name, "--force"]));
    (via, direct)
}
