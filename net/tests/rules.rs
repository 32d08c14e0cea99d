//! Root-only kernel tests of `devaipod-net rules` and `gate`: each test makes throwaway
//! network namespaces (`ip netns add dvpt-rules-PID-N`, deleted on drop), installs the
//! rules there with the built binary, and connects from threads that entered the
//! namespace and took the uid of the agent (4096), the workspace (1000), the proxy
//! (4097) or the gator (65534). A thread's network namespace and credentials are its
//! own on Linux (setns(2), and the raw setres[ug]id syscalls, which glibc's wrappers
//! would apply to every thread), and a socket keeps the credentials of the thread that
//! made it, which is what `meta skuid` reads.
//!
//! Not part of a plain `cargo test` (test = false in Cargo.toml): run it as root with
//! `just net-rules`. Three tests (`nft_lists_the_intended_ruleset`,
//! `untracked_agent_packets_are_refused`, `a_table_held_by_another_process_is_a_clear_error`)
//! use the `nft` binary (nftables) as a second opinion and as another process holding
//! the kernel's state; they fail, not skip, without it. The binary under test never
//! runs `nft`. Also needs `ip` (iproute2), `sysctl` (procps), `unshare` and `nsenter`
//! (util-linux).

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_devaipod-net");
const AGENT: u32 = 4096;
const WORKSPACE: u32 = 1000;
const PROXY: u32 = 4097;
const GATOR: u32 = 65534;
const NOT_INSTALLED: &str = "devaipod: this pod's network rules are not installed in this network namespace; the agent does not start without them. Start the pod with devaipod start NAME (or podman pod start, which runs the rules container first).";
/// A bound on every connect, so that a regression hangs no test; refusals arrive
/// in microseconds (IPv6 ICMP errors after the first SYN retransmission, ~1 s).
const CONNECT_BOUND: Duration = Duration::from_secs(5);

#[track_caller]
fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests make network namespaces and take other uids: run them as root (`just net-rules`)"
    );
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Drops this thread (only) to `uid` (and gid = uid, no supplementary groups).
fn become_uid(uid: u32) {
    // SAFETY: raw syscalls on the calling thread's credentials; the null pointer with
    // size 0 is setgroups' documented way to clear the list.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()),
            0,
            "setgroups: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::syscall(libc::SYS_setresgid, uid, uid, uid),
            0,
            "setresgid {uid}: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::syscall(libc::SYS_setresuid, uid, uid, uid),
            0,
            "setresuid {uid}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A network namespace the test owns.
struct Netns {
    /// For `ip -n` / `ip netns exec`; None for one held by a process (the userns test).
    name: Option<String>,
    file: File,
    holder: Option<Child>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// `ip netns add dvpt-rules-PID-N`, with `lo` up.
    fn new() -> Netns {
        require_root();
        let name = format!(
            "dvpt-rules-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let file = File::open(format!("/run/netns/{name}")).expect("open /run/netns/NAME");
        let ns = Netns {
            name: Some(name),
            file,
            holder: None,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        // Let every uid listen on every port (ports 1 and 53 below), as in a container.
        ns.sysctl("net.ipv4.ip_unprivileged_port_start=0");
        ns
    }

    fn name(&self) -> &str {
        self.name.as_deref().expect("a named network namespace")
    }

    #[track_caller]
    fn ip(&self, args: &[&str]) {
        run_ok(Command::new("ip").arg("-n").arg(self.name()).args(args));
    }

    #[track_caller]
    fn sysctl(&self, setting: &str) {
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", self.name(), "sysctl", "-qw"])
                .arg(setting),
        );
    }

    /// Runs `f` on a fresh thread inside this namespace, as `uid` (None: as root).
    fn run<T: Send>(&self, uid: Option<u32>, f: impl FnOnce() -> T + Send) -> T {
        let fd = self.file.as_raw_fd();
        thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on this thread with a namespace fd that lives as long as
                // `self`, which outlives the scope.
                let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                if let Some(uid) = uid {
                    become_uid(uid);
                }
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }

    /// Like `run`, but leaves the thread running (a server); join it for its result.
    fn spawn<T: Send + 'static>(
        &self,
        uid: u32,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let file = self.file.try_clone().expect("dup netns fd");
        thread::spawn(move || {
            // SAFETY: as in `run`; the duplicated fd lives in this closure.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            become_uid(uid);
            f()
        })
    }

    /// The binary, run in this namespace as `uid` (None: root).
    fn bin(&self, uid: Option<u32>, args: &[&str]) -> Output {
        self.run(uid, || {
            Command::new(BIN)
                .args(args)
                .output()
                .expect("running devaipod-net")
        })
    }

    /// `rules` with the pod's allowances (the proxy, the gator), which must succeed.
    #[track_caller]
    fn install(&self, marker: &Path) {
        self.install_with(marker, &["4097:4097", "65534:8765"]);
    }

    #[track_caller]
    fn install_with(&self, marker: &Path, allow: &[&str]) {
        let out = self.bin(None, &rules_args(marker, allow));
        assert!(
            out.status.success(),
            "rules failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn listen(&self, uid: u32, addr: &str) -> TcpListener {
        let addr: SocketAddr = addr.parse().expect("address");
        self.run(Some(uid), move || {
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("uid {uid} listening on {addr}: {e}"))
        })
    }

    /// A listener of `uid` on `addr` whose one accepted connection (accepted as `uid`,
    /// whose credentials the accepted socket gets) echoes what it reads.
    fn echo_server(&self, uid: u32, addr: &str) -> thread::JoinHandle<()> {
        let l = self.listen(uid, addr);
        self.spawn(uid, move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = [0u8; 64];
            loop {
                let n = s.read(&mut buf).expect("server read");
                if n == 0 {
                    return;
                }
                s.write_all(&buf[..n]).expect("server write");
            }
        })
    }

    fn connect(&self, uid: u32, addr: &str) -> std::io::Result<TcpStream> {
        let addr: SocketAddr = addr.parse().expect("address");
        self.run(Some(uid), move || {
            TcpStream::connect_timeout(&addr, CONNECT_BOUND)
        })
    }

    #[track_caller]
    fn assert_refused(&self, uid: u32, addr: &str) {
        match self.connect(uid, addr) {
            Ok(_) => panic!("uid {uid} connected to {addr}"),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::ConnectionRefused,
                "uid {uid} to {addr}: {e}"
            ),
        }
    }

    /// Connects and checks that bytes go there and back.
    #[track_caller]
    fn assert_echo(&self, uid: u32, addr: &str) -> TcpStream {
        let mut s = self
            .connect(uid, addr)
            .unwrap_or_else(|e| panic!("uid {uid} to {addr}: {e}"));
        echo_once(&mut s, b"ping");
        s
    }
}

#[track_caller]
fn echo_once(s: &mut TcpStream, what: &[u8]) {
    s.set_read_timeout(Some(CONNECT_BOUND)).expect("timeout");
    s.write_all(what).expect("client write");
    let mut back = vec![0u8; what.len()];
    s.read_exact(&mut back).expect("client read");
    assert_eq!(back, what);
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        if let Some(mut h) = self.holder.take() {
            drop(h.stdin.take()); // its `cat` ends, and the namespaces with it
            let _ = h.wait();
        }
    }
}

fn rules_args<'a>(marker: &'a Path, allow: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "rules",
        "--agent-uid",
        "4096",
        "--agent-port",
        "4096",
        "--marker",
        marker.to_str().expect("utf-8 path"),
    ];
    for a in allow {
        v.extend(["--allow-reply", a]);
    }
    v
}

/// A directory for markers, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "dvpt-rules-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir(&p).expect("temp dir");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        TempDir(p)
    }

    fn marker(&self) -> PathBuf {
        self.0.join("marker")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------

#[test]
fn the_agent_reaches_no_workspace_listener_on_any_port() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    // Including the ports of the allowances and the agent's own: the uid decides.
    let ports = [1u16, 80, 3000, 4096, 4097, 8765, 65535];
    let mut listeners = Vec::new();
    for p in ports {
        listeners.push(ns.listen(WORKSPACE, &format!("127.0.0.1:{p}")));
        listeners.push(ns.listen(WORKSPACE, &format!("[::1]:{p}")));
    }
    for p in ports {
        ns.assert_refused(AGENT, &format!("127.0.0.1:{p}"));
        ns.assert_refused(AGENT, &format!("[::1]:{p}"));
        // The same listeners answer the workspace: the refusal is the rules'.
        ns.connect(WORKSPACE, &format!("127.0.0.1:{p}"))
            .expect("workspace to its own v4 listener");
        ns.connect(WORKSPACE, &format!("[::1]:{p}"))
            .expect("workspace to its own v6 listener");
    }
}

#[test]
fn the_agent_reaches_its_own_listeners_the_proxy_and_the_gator_only_on_their_ports() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    let own4 = ns.echo_server(AGENT, "127.0.0.1:5000");
    let own6 = ns.echo_server(AGENT, "[::1]:5001");
    let proxy = ns.echo_server(PROXY, "127.0.0.1:4097");
    let gator = ns.echo_server(GATOR, "127.0.0.1:8765");
    let _proxy_other = ns.listen(PROXY, "127.0.0.1:4098");
    let _gator_other = ns.listen(GATOR, "127.0.0.1:8766");

    drop(ns.assert_echo(AGENT, "127.0.0.1:5000"));
    drop(ns.assert_echo(AGENT, "[::1]:5001"));
    drop(ns.assert_echo(AGENT, "127.0.0.1:4097"));
    drop(ns.assert_echo(AGENT, "127.0.0.1:8765"));
    ns.assert_refused(AGENT, "127.0.0.1:4098");
    ns.assert_refused(AGENT, "127.0.0.1:8766");
    for h in [own4, own6, proxy, gator] {
        h.join().expect("echo server");
    }
}

/// A veth pair inside the namespace, one end with 192.0.2.1 and 2001:db8:1::1,
/// standing for the pod's eth0 addresses: local, so reached through `lo` like
/// 127.0.0.1.
fn add_pod_addresses(ns: &Netns) {
    ns.ip(&[
        "link", "add", "dvpt0", "type", "veth", "peer", "name", "dvpt1",
    ]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "dvpt0"]);
    ns.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "dvpt0", "nodad"]);
    ns.ip(&["link", "set", "dvpt0", "up"]);
    ns.ip(&["link", "set", "dvpt1", "up"]);
}

/// The agent cannot impersonate a workspace service: its listeners on any port but
/// its opencode port refuse the workspace at once (rule 5), on every local address.
#[test]
fn the_agent_accepts_connections_of_others_on_its_opencode_port_only() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    add_pod_addresses(&ns);
    let addrs = [
        "127.0.0.1:7001",
        "[::1]:7001",
        "192.0.2.1:7200",
        "[2001:db8:1::1]:7200",
    ];
    let fakes: Vec<TcpListener> = addrs.iter().map(|a| ns.listen(AGENT, a)).collect();
    for a in addrs {
        for uid in [WORKSPACE, PROXY] {
            let started = Instant::now();
            ns.assert_refused(uid, a);
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(500),
                "uid {uid} to the agent's {a} was refused only after {took:?} (not by a RST+ACK in answer to its SYN)"
            );
        }
    }
    // No handshake completed: nothing is waiting in the agent's accept queues.
    for (l, a) in fakes.iter().zip(addrs) {
        l.set_nonblocking(true).expect("nonblocking");
        match l.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("the agent's {a} accepted a connection from {peer}"),
            Err(e) => panic!("accept on the agent's {a}: {e}"),
        }
    }
    // Its opencode port answers the workspace, on 127.0.0.1 and on the pod's address.
    let opencode = ns.echo_server(AGENT, "127.0.0.1:4096");
    drop(ns.assert_echo(WORKSPACE, "127.0.0.1:4096"));
    opencode.join().expect("opencode");
    let opencode = ns.echo_server(AGENT, "192.0.2.1:4096");
    drop(ns.assert_echo(WORKSPACE, "192.0.2.1:4096"));
    opencode.join().expect("opencode on the pod's address");
    // And the agent still reaches its own listener on another port.
    let own = ns.echo_server(AGENT, "127.0.0.1:7002");
    drop(ns.assert_echo(AGENT, "127.0.0.1:7002"));
    own.join().expect("own");
}

/// The proxy's and the gator's allowances hold for 127.0.0.1 only, where they listen:
/// a process of the proxy's uid on another local address is refused to the agent.
#[test]
fn the_allowances_hold_on_127_0_0_1_only() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    add_pod_addresses(&ns);
    let proxy = ns.echo_server(PROXY, "127.0.0.1:4097");
    let others = [
        "[::1]:4097",
        "192.0.2.1:4097",
        "[2001:db8:1::1]:4097",
        "[::1]:8765",
        "192.0.2.1:8765",
    ];
    let _listeners: Vec<TcpListener> = others
        .iter()
        .map(|a| {
            let uid = if a.ends_with(":8765") { GATOR } else { PROXY };
            ns.listen(uid, a)
        })
        .collect();
    for a in others {
        ns.assert_refused(AGENT, a);
        // The same listeners answer the workspace: the refusal is the rules'.
        ns.connect(WORKSPACE, a)
            .unwrap_or_else(|e| panic!("workspace to {a}: {e}"));
    }
    drop(ns.assert_echo(AGENT, "127.0.0.1:4097"));
    proxy.join().expect("proxy");
}

/// The residual case of rule 5, as the module documentation describes it: a cookie
/// SYN-ACK of the agent's listener carries no socket, so the workspace's handshake
/// completes and its data reaches the agent, but the agent's reply is reset (rule 6)
/// and never reaches the workspace.
#[test]
fn after_a_syncookie_handshake_the_agent_cannot_answer() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    ns.sysctl("net.ipv4.tcp_syncookies=2");
    let fake = ns.listen(AGENT, "127.0.0.1:7001");
    let before = syncookies_sent(&ns);
    let mut client = ns
        .connect(WORKSPACE, "127.0.0.1:7001")
        .expect("the workspace completes a syncookie handshake");
    assert!(
        syncookies_sent(&ns) > before,
        "the kernel sent no syncookie, so this test tests nothing"
    );
    client.write_all(b"secret?").expect("client write");
    let server = ns.spawn(AGENT, move || {
        let (mut s, _) = fake.accept().expect("accept");
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)
            .expect("the agent reads the client's data");
        assert_eq!(&buf, b"secret?");
        // The reply is rejected with a RST to the agent's own socket.
        let _ = s.write_all(b"answer");
        s.set_read_timeout(Some(CONNECT_BOUND)).expect("timeout");
        let mut one = [0u8; 1];
        let e = s.read(&mut one).expect_err("the agent's socket is reset");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    });
    server.join().expect("agent server");
    // Nothing of the agent's reached the client (loopback delivery is done by the
    // time the agent's write returned, so a read that does not wait tells).
    client.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 16];
    match client.read(&mut buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok(n) => panic!("the client read {:?} from the agent", &buf[..n]),
        Err(e) => panic!("client read: {e}"),
    }
}

#[test]
fn the_workspace_is_unaffected_and_reaches_the_agent() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    let opencode = ns.echo_server(AGENT, "127.0.0.1:4096");
    let own = ns.echo_server(WORKSPACE, "[::1]:3000");
    let proxy_other = ns.echo_server(PROXY, "127.0.0.1:4098");
    drop(ns.assert_echo(WORKSPACE, "127.0.0.1:4096"));
    drop(ns.assert_echo(WORKSPACE, "[::1]:3000"));
    drop(ns.assert_echo(WORKSPACE, "127.0.0.1:4098"));
    for h in [opencode, own, proxy_other] {
        h.join().expect("echo server");
    }
    // UDP too.
    let rx = ns.run(Some(WORKSPACE), || {
        UdpSocket::bind("127.0.0.1:5353").expect("udp bind")
    });
    ns.run(Some(WORKSPACE), || {
        UdpSocket::bind("127.0.0.1:0")
            .expect("udp")
            .send_to(b"dns?", "127.0.0.1:5353")
            .expect("workspace udp send")
    });
    rx.set_read_timeout(Some(CONNECT_BOUND)).expect("timeout");
    let mut buf = [0u8; 8];
    let (n, _) = rx.recv_from(&mut buf).expect("workspace udp arrives");
    assert_eq!(&buf[..n], b"dns?");
}

#[test]
fn the_agent_sends_no_udp_and_no_icmp() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    // Let every gid open ping sockets here, so that ICMP gets as far as the rules.
    ns.sysctl("net.ipv4.ping_group_range=0 2147483647");
    let _rx4 = ns.run(Some(WORKSPACE), || {
        UdpSocket::bind("127.0.0.1:53").expect("bind")
    });
    let _rx6 = ns.run(Some(WORKSPACE), || {
        UdpSocket::bind("[::1]:53").expect("bind")
    });
    for (bind, to) in [("127.0.0.1:0", "127.0.0.1:53"), ("[::1]:0", "[::1]:53")] {
        let e = ns
            .run(Some(AGENT), || {
                UdpSocket::bind(bind).expect("udp").send_to(b"dns?", to)
            })
            .expect_err("agent udp must fail");
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EPERM),
            "agent udp to {to}: {e}"
        );
    }
    assert_eq!(ns.run(Some(AGENT), ping_localhost), Err(libc::EPERM));
    assert_eq!(ns.run(Some(WORKSPACE), ping_localhost), Ok(()));
}

/// One ICMP echo to 127.0.0.1 through a ping socket: Ok once the reply is read, or
/// the errno of the first step that failed.
fn ping_localhost() -> Result<(), i32> {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
    // SAFETY: plain socket calls on a descriptor this function owns and closes; the
    // buffers and address outlive each call that reads or writes them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP);
        if fd < 0 {
            return Err(errno());
        }
        let tv = libc::timeval {
            tv_sec: CONNECT_BOUND.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
        // ICMP echo request: type 8, code 0; the kernel fills in id and checksum.
        let req = [8u8, 0, 0, 0, 0, 0, 0, 1, b'd', b'v', b'p', b't'];
        let sent = libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let result = if sent < 0 {
            Err(errno())
        } else {
            let mut buf = [0u8; 64];
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 0 {
                Err(errno())
            } else if buf[0] != 0 {
                Err(-2) // not an echo reply
            } else {
                Ok(())
            }
        };
        libc::close(fd);
        result
    }
}

#[test]
fn the_agent_cannot_leave_through_another_interface() {
    let ns = Netns::new();
    let outside = Netns::new();
    let dir = TempDir::new();
    ns.ip(&[
        "link",
        "add",
        "dvpt0",
        "type",
        "veth",
        "peer",
        "name",
        "dvpt1",
        "netns",
        outside.name(),
    ]);
    ns.ip(&["addr", "add", "198.51.100.1/24", "dev", "dvpt0"]);
    ns.ip(&["addr", "add", "2001:db8::1/64", "dev", "dvpt0", "nodad"]);
    ns.ip(&["link", "set", "dvpt0", "up"]);
    outside.ip(&["addr", "add", "198.51.100.2/24", "dev", "dvpt1"]);
    outside.ip(&["addr", "add", "2001:db8::2/64", "dev", "dvpt1", "nodad"]);
    outside.ip(&["link", "set", "dvpt1", "up"]);
    let _web4 = outside.run(None, || TcpListener::bind("198.51.100.2:80").expect("bind"));
    let _web6 = outside.run(None, || {
        TcpListener::bind("[2001:db8::2]:80").expect("bind")
    });
    // A workspace server on every address: reachable through the pod's own address.
    let _ws = ns.listen(WORKSPACE, "0.0.0.0:3000");
    ns.install(&dir.marker());

    let e = ns
        .connect(AGENT, "198.51.100.2:80")
        .expect_err("agent v4 out");
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EHOSTUNREACH),
        "agent v4 out: {e}"
    );
    let e = ns
        .connect(AGENT, "[2001:db8::2]:80")
        .expect_err("agent v6 out");
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "agent v6 out: {e}");
    ns.assert_refused(AGENT, "198.51.100.1:3000");
    // The workspace goes out, and reaches its server, as before.
    ns.connect(WORKSPACE, "198.51.100.2:80")
        .expect("workspace v4 out");
    ns.connect(WORKSPACE, "[2001:db8::2]:80")
        .expect("workspace v6 out");
    ns.connect(WORKSPACE, "198.51.100.1:3000")
        .expect("workspace to its server");
}

/// The kernel's count of syncookies sent in the namespace (TcpExt SyncookiesSent).
fn syncookies_sent(ns: &Netns) -> u64 {
    let out =
        run_ok(Command::new("ip").args(["netns", "exec", ns.name(), "cat", "/proc/net/netstat"]));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next().expect("TcpExt names");
    let values = lines.next().expect("TcpExt values");
    let i = names
        .split_whitespace()
        .position(|n| n == "SyncookiesSent")
        .expect("SyncookiesSent");
    values
        .split_whitespace()
        .nth(i)
        .expect("value")
        .parse()
        .expect("number")
}

/// Syncookie SYN-ACKs have no socket, so no `meta skuid` match sees them: a ruleset
/// that refused SYN-ACKs by uid alone let the agent in here.
#[test]
fn syncookies_do_not_open_a_workspace_listener() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    ns.sysctl("net.ipv4.tcp_syncookies=2");
    let _ws4 = ns.listen(WORKSPACE, "127.0.0.1:3000");
    let _ws6 = ns.listen(WORKSPACE, "[::1]:3000");
    let before = syncookies_sent(&ns);
    ns.connect(WORKSPACE, "127.0.0.1:3000")
        .expect("workspace connects with a syncookie");
    assert!(
        syncookies_sent(&ns) > before,
        "the kernel sent no syncookie, so this test tests nothing"
    );
    ns.assert_refused(AGENT, "127.0.0.1:3000");
    ns.assert_refused(AGENT, "[::1]:3000");
}

#[test]
fn rules_are_idempotent_and_replace_the_previous_ones() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    let first = fs::read_to_string(dir.marker()).expect("marker");
    let proxy = ns.echo_server(PROXY, "127.0.0.1:4097");
    let _ws = ns.listen(WORKSPACE, "127.0.0.1:3000");
    let mut held = ns.assert_echo(AGENT, "127.0.0.1:4097");

    // Again, with the same policy: read back passes (so the table holds the rules
    // once), the marker is the same, a connection made before keeps working.
    ns.install(&dir.marker());
    assert_eq!(fs::read_to_string(dir.marker()).expect("marker"), first);
    echo_once(&mut held, b"after the re-install");
    ns.assert_refused(AGENT, "127.0.0.1:3000");
    drop(held);
    proxy.join().expect("proxy");

    // With another policy: the old allowance is gone, not kept beside the new one.
    let _proxy2 = ns.listen(PROXY, "127.0.0.1:4097");
    ns.install_with(&dir.marker(), &["65534:8765"]);
    ns.assert_refused(AGENT, "127.0.0.1:4097");
    assert_ne!(fs::read_to_string(dir.marker()).expect("marker"), first);
}

#[test]
fn rules_without_cap_net_admin_fail_and_write_no_marker() {
    let ns = Netns::new();
    let dir = TempDir::new();
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = ns.bin(Some(WORKSPACE), &rules_args(&dir.marker(), &["4097:4097"]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    assert!(!dir.marker().exists(), "a marker was written");
}

// ---------------------------------------------------------------------------------
// gate

fn gate(marker: &Path, timeout: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "gate",
        "--marker",
        marker.to_str().expect("utf-8"),
        "--timeout-secs",
        timeout,
    ]);
    c
}

#[test]
fn gate_waits_for_the_marker_of_its_own_network_namespace() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let marker = dir.marker();
    let started = Instant::now();
    let mut waiting = ns.run(Some(AGENT), || {
        gate(&marker, "30")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gate")
    });
    assert!(
        waiting.try_wait().expect("try_wait").is_none(),
        "the gate ended before any marker existed"
    );
    ns.install(&marker);
    let out = waiting.wait_with_output().expect("gate");
    assert!(
        out.status.success(),
        "gate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // And at once when the marker is there already.
    let out = ns.run(Some(AGENT), || gate(&marker, "0").output().expect("gate"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[track_caller]
fn assert_gate_refuses(ns: &Netns, marker: &Path, why: &str) {
    let started = Instant::now();
    let out = ns.run(Some(AGENT), || gate(marker, "1").output().expect("gate"));
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with(NOT_INSTALLED), "{err}");
    assert!(err.contains(why), "{err}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "the gate gave up after {took:?}, not after its 1 s"
    );
}

#[test]
fn gate_refuses_a_marker_of_another_network_namespace_or_boot() {
    let pod = Netns::new();
    let other = Netns::new();
    let dir = TempDir::new();
    assert_gate_refuses(&pod, &dir.marker(), "does not exist");
    pod.install(&dir.marker());
    // A stale marker: the pod's netns is another one now.
    assert_gate_refuses(&other, &dir.marker(), "names network namespace");
    // The right cookie from another boot (cookies restart at every boot).
    let text = fs::read_to_string(dir.marker()).expect("marker");
    let mut m: serde_json::Value = serde_json::from_str(&text).expect("json");
    m["boot_id"] = "00000000-0000-0000-0000-000000000000".into();
    fs::write(dir.marker(), m.to_string()).expect("write");
    assert_gate_refuses(&pod, &dir.marker(), "another boot");
}

// ---------------------------------------------------------------------------------
// A rootless pod: the network namespace belongs to a user namespace

/// A user namespace mapping 0..65536 to host uids 100000.. (as rootless Podman's
/// does, from /etc/subuid) and a network namespace it owns, held by a `cat`.
fn rootless_netns() -> Netns {
    require_root();
    let mut holder = Command::new("unshare")
        .args([
            "--user",
            "--net",
            "--",
            "sh",
            "-c",
            "echo unshared; exec cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let mut line = [0u8; 9];
    holder
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut line)
        .expect("unshare's first line");
    assert_eq!(&line, b"unshared\n");
    let pid = holder.id();
    for map in ["uid_map", "gid_map"] {
        fs::write(format!("/proc/{pid}/{map}"), "0 100000 65536\n")
            .unwrap_or_else(|e| panic!("writing {map}: {e}"));
    }
    let file = File::open(format!("/proc/{pid}/ns/net")).expect("netns of the holder");
    let ns = Netns {
        name: None,
        file,
        holder: Some(holder),
    };
    ns.run(None, || {
        run_ok(Command::new("ip").args(["link", "set", "lo", "up"]));
    });
    ns
}

fn nsenter(ns: &Netns, user: Option<u32>) -> Command {
    let pid = ns.holder.as_ref().expect("holder").id().to_string();
    let mut c = Command::new("nsenter");
    c.args(["-t", &pid, "-n"]);
    if let Some(uid) = user {
        let id = uid.to_string();
        c.args(["-U", "-S", &id, "-G", &id]);
    }
    c.arg("--").arg(BIN);
    c
}

/// The rules container of a rootless pod runs in the pod's user namespace and names
/// the pod's uids; `meta skuid` is read in that namespace (host uid 104096 is the
/// agent's 4096 there).
#[test]
fn in_a_user_namespace_the_rules_key_on_its_uids() {
    let ns = rootless_netns();
    let dir = TempDir::new();
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).expect("chmod");
    let marker = dir.marker();
    let m = marker.to_str().expect("utf-8");

    // From outside the pod's user namespace: refused, the uids would be the host's.
    let out = nsenter(&ns, None)
        .args([
            "rules",
            "--agent-uid",
            "4096",
            "--agent-port",
            "4096",
            "--marker",
            m,
        ])
        .output()
        .expect("nsenter");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to another user namespace"), "{err}");

    // From inside, as its root (CAP_NET_ADMIN over the namespace).
    let out = nsenter(&ns, Some(0))
        .args([
            "rules",
            "--agent-uid",
            "4096",
            "--agent-port",
            "4096",
            "--allow-reply",
            "4097:4097",
            "--marker",
            m,
        ])
        .output()
        .expect("nsenter");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let host = |uid: u32| 100_000 + uid;
    let _ws = ns.listen(host(WORKSPACE), "127.0.0.1:3000");
    let own = ns.echo_server(host(AGENT), "127.0.0.1:5000");
    let proxy = ns.echo_server(host(PROXY), "127.0.0.1:4097");
    ns.assert_refused(host(AGENT), "127.0.0.1:3000");
    drop(ns.assert_echo(host(AGENT), "127.0.0.1:5000"));
    drop(ns.assert_echo(host(AGENT), "127.0.0.1:4097"));
    ns.connect(host(WORKSPACE), "127.0.0.1:3000")
        .expect("workspace");
    // Host uid 4096 is not the agent here (it is not even mapped).
    ns.connect(AGENT, "127.0.0.1:3000").expect("host uid 4096");
    own.join().expect("own");
    proxy.join().expect("proxy");

    // The agent's gate, in the pod's namespaces, passes.
    let out = nsenter(&ns, Some(AGENT))
        .args(["gate", "--marker", m, "--timeout-secs", "0"])
        .output()
        .expect("nsenter");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------
// A second opinion from nft(8)

fn nft(ns: &Netns, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft"])
        .args(args)
        .output()
        .expect("ip netns exec");
    assert!(
        out.status.success(),
        "nft {args:?} failed: {} (this cross-check needs nftables' nft binary: apt-get install nftables)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn nft_lists_the_intended_ruleset() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    let want = "\
table inet devaipod {
	chain output {
		type filter hook output priority filter; policy accept;
		meta skuid 4096 oifname != \"lo\" counter packets 0 bytes 0 reject with icmpx admin-prohibited
		meta skuid 4096 meta l4proto != tcp counter packets 0 bytes 0 reject with icmpx admin-prohibited
		meta skuid 4096 ct state invalid,untracked counter packets 0 bytes 0 reject with icmpx admin-prohibited
		oifname \"lo\" meta skuid 4096 ct state new ct mark set 0x64766167
		oifname \"lo\" meta skuid 4096 ct mark != 0x64766167 tcp sport != 4096 tcp flags syn,ack / syn,ack counter packets 0 bytes 0 tcp flags set rst | ack accept
		oifname \"lo\" meta skuid 4096 ct mark != 0x64766167 tcp sport != 4096 counter packets 0 bytes 0 reject with tcp reset
		oifname \"lo\" ct mark 0x64766167 meta skuid 4096 accept
		oifname \"lo\" ct mark 0x64766167 meta skuid 4097 ip saddr 127.0.0.1 tcp sport 4097 accept
		oifname \"lo\" ct mark 0x64766167 meta skuid 65534 ip saddr 127.0.0.1 tcp sport 8765 accept
		oifname \"lo\" ct mark 0x64766167 tcp flags syn,ack / syn,ack counter packets 0 bytes 0 tcp flags set rst | ack accept
		oifname \"lo\" ct mark 0x64766167 meta skuid != 4096 meta l4proto tcp counter packets 0 bytes 0 reject with tcp reset
	}
}
";
    assert_eq!(nft(&ns, &["list", "ruleset"]), want);
}

/// Rule 3: with conntrack switched off for the loopback (by someone holding
/// CAP_NET_ADMIN), the agent's connections are refused rather than let through
/// unmarked.
#[test]
fn untracked_agent_packets_are_refused() {
    let ns = Netns::new();
    let dir = TempDir::new();
    ns.install(&dir.marker());
    nft(&ns, &["add table inet dvpt"]);
    nft(
        &ns,
        &["add chain inet dvpt raw { type filter hook output priority raw; }"],
    );
    nft(&ns, &["add rule inet dvpt raw oifname lo notrack"]);
    let _ws = ns.listen(WORKSPACE, "127.0.0.1:3000");
    let e = ns
        .connect(AGENT, "127.0.0.1:3000")
        .expect_err("untracked agent");
    assert_eq!(e.raw_os_error(), Some(libc::EHOSTUNREACH), "{e}");
    ns.connect(WORKSPACE, "127.0.0.1:3000")
        .expect("workspace, untracked");
    // A re-install says that another table is there.
    let out = ns.bin(None, &rules_args(&dir.marker(), &["4097:4097"]));
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("also holds the nftables tables inet dvpt"),
        "{err}"
    );
}

/// A table of that name owned by another process (`flags owner`, held by a running
/// `nft -i`): the transaction is refused as a whole, the error names the first refused
/// message, no marker is written; once the owner is gone, `rules` succeeds.
#[test]
fn a_table_held_by_another_process_is_a_clear_error() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let mut owner = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "-i"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("nft -i (nftables)");
    let mut stdin = owner.stdin.take().expect("stdin");
    stdin
        .write_all(b"add table inet devaipod { flags owner; }\nlist tables\n")
        .expect("nft -i input");
    // `list tables` answers once the table exists.
    let mut out = owner.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("table inet devaipod") {
        let n = out.read(&mut byte).expect("nft -i output");
        assert_eq!(n, 1, "nft -i ended: {}", String::from_utf8_lossy(&seen));
        seen.push(byte[0]);
    }

    let out = ns.bin(None, &rules_args(&dir.marker(), &["4097:4097"]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the kernel refused the nftables transaction (nothing was changed): add table inet devaipod: Operation not permitted"),
        "{err}"
    );
    assert!(err.contains("flags owner"), "{err}");
    assert!(err.contains("later messages of it"), "{err}");
    assert!(!dir.marker().exists(), "a marker was written");

    drop(stdin);
    owner.wait().expect("nft -i");
    ns.install(&dir.marker());
}
