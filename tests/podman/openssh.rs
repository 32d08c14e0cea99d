//! Stock OpenSSH clients (ssh, scp, sftp) reaching a pod through the entry
//! `devaipod ssh-config` writes: devaipod's own SSH server over the ProxyCommand's stdio,
//! on an image without sshd. Each test has its own HOME with its own key; the client is
//! always given that key (`-i`, IdentitiesOnly), since OpenSSH reads the passwd
//! entry's home, not $HOME, for its defaults.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::pod::{BASE_IMAGE, TestPod, exec, require_image, stderr, stdout};
use crate::common::wait_until;

/// One client's side: a HOME with a key, and the pod's entry written there.
/// XDG_DATA_HOME and XDG_CONFIG_HOME stay the test user's own: rootless Podman finds
/// its store and configuration there (from HOME, when they are unset), and devaipod
/// keeps the pod's host key there (removed when the client is dropped).
struct Client {
    home: tempfile::TempDir,
    entry: PathBuf,
    host: String,
    name: String,
    data: PathBuf,
    config: PathBuf,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.data.join("devaipod/ssh").join(&self.name));
    }
}

/// The test user's XDG_DATA_HOME and XDG_CONFIG_HOME (their defaults under HOME).
fn xdg_dirs() -> (PathBuf, PathBuf) {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
    let dir = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(default))
    };
    (
        dir("XDG_DATA_HOME", ".local/share"),
        dir("XDG_CONFIG_HOME", ".config"),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn keygen(path: &Path) {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs (package openssh-client)");
    assert!(o.status.success(), "ssh-keygen: {}", stderr(&o));
}

impl Client {
    /// A HOME with ~/.ssh/id_ed25519, and `devaipod ssh-config NAME` run in it: the
    /// entry is 0600 in a 0700 folder, and its path is what ssh-config printed.
    fn new(p: &TestPod) -> Self {
        let home = tempfile::Builder::new()
            .prefix("devaipod-test-home-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(home.path().join(".ssh")).expect("mkdir .ssh");
        std::fs::set_permissions(
            home.path().join(".ssh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod");
        keygen(&home.path().join(".ssh/id_ed25519"));
        let (data, config) = xdg_dirs();
        let o = p
            .command(&["ssh-config", p.name()])
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", &data)
            .env("XDG_CONFIG_HOME", &config)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("devaipod runs");
        assert!(o.status.success(), "ssh-config: {}", stderr(&o));
        let entry = PathBuf::from(stdout(&o).trim());
        assert_eq!(
            entry,
            home.path()
                .join(".ssh/config.d")
                .join(format!("devaipod-{}", p.name()))
        );
        assert_eq!(mode(&entry), 0o600, "the entry file");
        assert_eq!(mode(entry.parent().expect("dir")), 0o700, "config.d");
        assert!(
            stderr(&o).contains("Include config.d/*"),
            "the Include line is suggested: {}",
            stderr(&o)
        );
        Self {
            home,
            entry,
            host: p.pod(),
            name: p.name().to_string(),
            data,
            config,
        }
    }

    /// The environment of every client command (and so of the ProxyCommand).
    fn env(&self, c: &mut Command) {
        c.env("HOME", self.home.path())
            .env("XDG_DATA_HOME", &self.data)
            .env("XDG_CONFIG_HOME", &self.config)
            .env_remove("SSH_AUTH_SOCK");
    }

    fn key(&self) -> PathBuf {
        self.home.path().join(".ssh/id_ed25519")
    }

    /// `ssh -F ENTRY -i KEY` with this HOME (no agent), plus `args`.
    fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.arg("-F")
            .arg(&self.entry)
            .arg("-i")
            .arg(self.key())
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args(args)
            .stdin(Stdio::null());
        self.env(&mut c);
        c
    }

    /// `ssh HOST COMMAND`.
    fn ssh(&self, command: &str) -> Output {
        self.cmd("ssh", &[&self.host, command])
            .output()
            .expect("ssh runs")
    }
}

/// A TCP port of the host's loopback that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts on 127.0.0.1:`port`.
fn wait_for_listener(what: &str, port: u16) {
    wait_until(what, Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// Kills a child on drop (a forwarding ssh or devaipod forward).
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The HTTP status curl got for `url`, with curl's extra arguments.
fn http_status(url: &str, extra: &[&str]) -> String {
    let o = Command::new("curl")
        .args(["-s", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs");
    stdout(&o)
}

#[test]
fn openssh_runs_commands_terminals_and_signals_and_pins_keys() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("openssh")
        .config(
            r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev",
            "remoteEnv": {"SSH_REMOTE": "from-remote-env"},
            "postAttachCommand": "echo attached-$((20+1))"}"#,
        )
        .up();
    let c = Client::new(&p);

    // A command runs as remoteUser in workspaceFolder with remoteEnv.
    let o = c.ssh("pwd; id -un; echo $SSH_REMOTE");
    assert!(o.status.success(), "ssh: {}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{}\ndev\nfrom-remote-env\n", p.folder())
    );
    // Exit codes pass through, a death by signal too (as 128+N, as a shell reports it).
    assert_eq!(c.ssh("exit 7").status.code(), Some(7));
    assert_eq!(c.ssh("kill -TERM $$").status.code(), Some(143));
    // stdin passes through and its end reaches the command; stderr stays stderr.
    let mut child = c
        .cmd("ssh", &[&c.host, "tr a-z A-Z; echo done >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"piped through\n")
        .expect("write");
    let o = child.wait_with_output().expect("wait");
    assert_eq!(stdout(&o), "PIPED THROUGH\n");
    assert!(stderr(&o).contains("done"), "{}", stderr(&o));

    // `ssh -tt`: a terminal of the client's size, and window changes follow it.
    pty_follows_the_window(&c, &p.workspace());

    // An interactive shell: postAttachCommand runs first, the exit status comes back.
    let o = c
        .cmd("ssh", &["-tt", &c.host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            ch.stdin
                .take()
                .expect("stdin")
                .write_all(b"echo shell-$((6*7)); exit 4\n")?;
            ch.wait_with_output()
        })
        .expect("ssh -tt");
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(4), "{all}");
    assert!(all.contains("shell-42"), "{all}");
    assert!(all.contains("attached-21"), "postAttachCommand ran: {all}");

    // A client that goes away hangs up its terminal session, as closing a pty would:
    // nothing is left running in the workspace.
    let ws = p.workspace();
    let running = |cmdline: &str| {
        exec(
            &ws,
            None,
            &format!("for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = '{cmdline} ' ] && echo hit; done | wc -l"),
        )
        .trim()
            != "0"
    };
    let hold = c
        .cmd("ssh", &["-tt", &c.host, "sleep 301"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh -tt");
    let mut hold = Reap(hold);
    wait_until("sleep 301 runs", Duration::from_secs(30), || {
        running("sleep 301")
    });
    hold.0.kill().expect("kill ssh");
    hold.0.wait().expect("reaped");
    wait_until(
        "the session's process is hung up",
        Duration::from_secs(30),
        || !running("sleep 301"),
    );

    // A signal request (OpenSSH's client cannot send one; russh's can) reaches the
    // command.
    signal_reaches_the_command(&p, &c);

    // Refused with a message: agent forwarding, remote forwarding.
    let agent = Command::new("ssh-agent")
        .arg("-a")
        .arg(c.home.path().join("agent.sock"))
        .arg("-D")
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let _agent = Reap(agent);
    wait_until("ssh-agent listens", Duration::from_secs(10), || {
        c.home.path().join("agent.sock").exists()
    });
    let o = c
        .cmd(
            "ssh",
            &["-A", &c.host, "echo ran; echo ${SSH_AUTH_SOCK:-no-agent}"],
        )
        .env("SSH_AUTH_SOCK", c.home.path().join("agent.sock"))
        .output()
        .expect("ssh -A");
    assert_eq!(stdout(&o), "ran\nno-agent\n");
    assert!(
        stderr(&o).contains("agent forwarding (-A) is refused"),
        "{}",
        stderr(&o)
    );
    let o = c
        .cmd(
            "ssh",
            &[
                "-o",
                "ExitOnForwardFailure=yes",
                "-R",
                "0:127.0.0.1:9",
                &c.host,
                "true",
            ],
        )
        .output()
        .expect("ssh -R");
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("remote forwarding (-R"),
        "{}",
        stderr(&o)
    );

    // A key the user does not have is refused.
    let stranger = c.home.path().join("stranger");
    keygen(&stranger);
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(&c.entry).arg("-i").arg(&stranger).args([
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        &c.host,
        "true",
    ]);
    c.env(&mut cmd);
    let o = cmd.output().expect("ssh");
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("Permission denied (publickey)"),
        "{}",
        stderr(&o)
    );

    // A changed host key is refused by the client (the entry pins the first one).
    let key_file = c
        .data
        .join("devaipod/ssh")
        .join(&c.name)
        .join("host_ed25519_key");
    assert_eq!(mode(&key_file), 0o600);
    std::fs::remove_file(&key_file).expect("rm host key");
    let o = c.ssh("echo should-not-run");
    assert_eq!(o.status.code(), Some(255));
    assert!(!stdout(&o).contains("should-not-run"));
    assert!(
        stderr(&o).contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || stderr(&o).contains("Host key verification failed"),
        "{}",
        stderr(&o)
    );
}

/// `ssh -tt` on a terminal of 100x30 sees 30 rows, 100 columns; after the terminal
/// becomes 120x50 (and ssh gets SIGWINCH, as from a terminal), the command sees that.
fn pty_follows_the_window(c: &Client, ws: &str) {
    use nix::pty::{Winsize, openpty};
    let size = |cols, rows| Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size(100, 30)), None).expect("openpty");
    let slave = |fd: &std::os::fd::OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
    let mut child = c
        .cmd(
            "ssh",
            &[
                "-tt",
                &c.host,
                "echo size1:$(stty size) on:$(tty):; read x; echo size2:$(stty size)",
            ],
        )
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave))
        .spawn()
        .expect("ssh -tt");
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master.try_clone().expect("dup"));
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&seen).contains(want) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.extend(chunk),
                Err(_) => panic!(
                    "no {want:?} from ssh -tt: {}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    };
    let text = wait_for("size1:30 100 on:/dev/pts/");
    let tty = text
        .split("on:")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .expect("the tty's name")
        .to_string();
    rustix::termios::tcsetwinsize(
        &pty.master,
        rustix::termios::Winsize {
            ws_row: 50,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .expect("resize");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .expect("SIGWINCH");
    // The container's terminal takes the new size (ssh's window change, then the
    // engine's resize); then the command reads it too.
    wait_until(
        "the session's terminal is 50x120",
        Duration::from_secs(30),
        || exec(ws, None, &format!("stty -F {tty} size")).trim() == "50 120",
    );
    std::fs::File::from(pty.master.try_clone().expect("dup"))
        .write_all(b"\r")
        .expect("write");
    wait_for("size2:50 120");
    let status = child.wait().expect("wait");
    assert!(status.success(), "ssh -tt: {status}");
}

/// A russh client (over the same ProxyCommand) sends `signal TERM` to `exec sleep 61`:
/// the command dies of it and the exit status says so.
fn signal_reaches_the_command(p: &TestPod, c: &Client) {
    struct Trusting;
    impl russh::client::Handler for Trusting {
        type Error = russh::Error;
        async fn check_server_key(
            &mut self,
            _key: &russh::keys::PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut cmd = p.command(&["ssh-server", p.name()]);
        c.env(&mut cmd);
        let mut server = tokio::process::Command::from(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("devaipod ssh-server");
        let stream = tokio::io::join(
            server.stdout.take().expect("stdout"),
            server.stdin.take().expect("stdin"),
        );
        let config = std::sync::Arc::new(russh::client::Config::default());
        let mut session = russh::client::connect_stream(config, stream, Trusting)
            .await
            .expect("ssh handshake");
        let key = russh::keys::load_secret_key(c.key(), None).expect("key");
        let auth = session
            .authenticate_publickey(
                "dev",
                russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(key), None),
            )
            .await
            .expect("auth");
        assert!(auth.success(), "the user's key is accepted");
        let mut channel = session.channel_open_session().await.expect("channel");
        channel.exec(true, "exec sleep 61").await.expect("exec");
        let ws = p.workspace();
        tokio::task::spawn_blocking(move || {
            wait_until("sleep 61 runs", Duration::from_secs(30), || {
                exec(
                    &ws,
                    None,
                    "for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = 'sleep 61 ' ] && echo hit; done | wc -l",
                )
                .trim()
                    != "0"
            });
        })
        .await
        .expect("waited");
        channel.signal(russh::Sig::TERM).await.expect("signal");
        let status = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match channel.wait().await {
                    Some(russh::ChannelMsg::ExitStatus { exit_status }) => break Some(exit_status),
                    None => break None,
                    Some(_) => {}
                }
            }
        })
        .await
        .expect("the command ended");
        assert_eq!(status, Some(143), "killed by SIGTERM");
    });
}

#[test]
fn openssh_copies_files_and_forwards_ports() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("sftp").config(crate::BASE_CONFIG).up();
    let c = Client::new(&p);
    let ws = p.workspace();
    let local = c.home.path().join("local");
    std::fs::create_dir(&local).expect("mkdir");

    // scp (SFTP underneath, with OpenSSH 9) in: relative paths are in workspaceFolder,
    // and the file is remoteUser's.
    std::fs::write(local.join("in.txt"), "copied in\n").expect("write");
    let o = c
        .cmd("scp", &[])
        .arg(local.join("in.txt"))
        .arg(format!("{}:in.txt", c.host))
        .output()
        .expect("scp");
    assert!(o.status.success(), "scp in: {}", stderr(&o));
    let folder = p.folder();
    assert_eq!(
        exec(
            &ws,
            None,
            &format!("stat -c '%U %a' {folder}/in.txt; cat {folder}/in.txt")
        ),
        "dev 644\ncopied in\n"
    );
    // and out.
    let o = c
        .cmd("scp", &[])
        .arg(format!("{}:/etc/os-release", c.host))
        .arg(local.join("os-release"))
        .output()
        .expect("scp");
    assert!(o.status.success(), "scp out: {}", stderr(&o));
    assert!(
        std::fs::read_to_string(local.join("os-release"))
            .expect("read")
            .contains("Debian")
    );

    // sftp: a batch of the usual operations.
    std::fs::write(local.join("b.bin"), vec![7u8; 300_000]).expect("write");
    let batch = c.home.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "mkdir d\ncd d\nput {l}/b.bin\nrename b.bin c.bin\nchmod 600 c.bin\nsymlink c.bin link\nls -l\nget c.bin {l}/back.bin\nrm link\n",
            l = local.display()
        ),
    )
    .expect("batch");
    let o = c
        .cmd("sftp", &["-b"])
        .arg(&batch)
        .arg(&c.host)
        .output()
        .expect("sftp");
    assert!(o.status.success(), "sftp: {}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("c.bin"), "{}", stdout(&o));
    assert_eq!(
        std::fs::read(local.join("back.bin")).expect("read"),
        vec![7u8; 300_000]
    );
    assert_eq!(
        exec(
            &ws,
            None,
            &format!("cd {folder}/d && stat -c '%U %a %s' c.bin && ls")
        ),
        "dev 600 300000\nc.bin\n"
    );

    // ssh -L to the agent's port: it answers 401 without its password.
    let lport = free_port();
    let fwd = c
        .cmd(
            "ssh",
            &[
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-L",
                &format!("{lport}:127.0.0.1:4096"),
                &c.host,
            ],
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh -L");
    let _fwd = Reap(fwd);
    wait_for_listener("ssh -L listens", lport);
    assert_eq!(
        http_status(&format!("http://127.0.0.1:{lport}/"), &[]),
        "401"
    );

    // ssh -D (what VS Code uses) with a SOCKS client: the same answer; a host outside
    // the pod is refused.
    let dport = free_port();
    let socks = c
        .cmd(
            "ssh",
            &[
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-D",
                &format!("127.0.0.1:{dport}"),
                &c.host,
            ],
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh -D");
    let _socks = Reap(socks);
    wait_for_listener("ssh -D listens", dport);
    let proxy = format!("127.0.0.1:{dport}");
    assert_eq!(
        http_status("http://127.0.0.1:4096/", &["--socks5-hostname", &proxy]),
        "401"
    );
    assert_eq!(
        http_status("http://192.0.2.1/", &["--socks5-hostname", &proxy]),
        "000",
        "a host outside the pod is not reached"
    );

    // devaipod forward reaches a port opened after `up`, not declared anywhere.
    podman_exec_detached(
        &ws,
        r#"perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>"127.0.0.1",LocalPort=>8123,Listen=>5,ReuseAddr=>1) or die "listen: $!"; while($c=$s->accept){print $c "late-port-says-hi\n"; close $c}'"#,
    );
    wait_until("the late port listens", Duration::from_secs(30), || {
        exec(
            &ws,
            None,
            "grep -c ':1FBB 00000000:0000 0A' /proc/net/tcp || true",
        )
        .trim()
            != "0"
    });
    let fport = free_port();
    let forward = p
        .command(&["forward", p.name(), &format!("{fport}:8123")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("devaipod forward");
    let _forward = Reap(forward);
    wait_for_listener("devaipod forward listens", fport);
    let mut got = String::new();
    std::net::TcpStream::connect(("127.0.0.1", fport))
        .expect("connect")
        .read_to_string(&mut got)
        .expect("read");
    assert_eq!(got, "late-port-says-hi\n");
}

/// `podman exec -d CONTAINER sh -c SCRIPT` as the container's user.
fn podman_exec_detached(container: &str, script: &str) {
    crate::common::pod::podman_ok(&["exec", "-d", container, "sh", "-c", script]);
}
