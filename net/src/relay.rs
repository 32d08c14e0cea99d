//! `relay HOST PORT`: stdin to a TCP port of the pod's loopback, and its replies to
//! stdout. devaipod's SSH server (`ssh -L`, `ssh -D`) and `devaipod forward` run it by
//! `podman exec` in the workspace container, so a connection reaches a port listening
//! inside the pod: rootless, the host cannot dial the pod's network.
//!
//! Only the loopback: the relay is a way into the pod, not out of it. stdin's end shuts
//! the socket's sending side (TCP's half-close: the answer still comes back); the
//! socket's end closes stdout and ends the relay, whether stdin has ended or not.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::process::ExitCode;

/// Exit status when HOST is not the loopback (or PORT is 0): a caller's mistake, as
/// clap's for bad arguments.
const USAGE: u8 = 2;

/// The addresses HOST names, if it names the loopback.
fn loopback(host: &str) -> Option<Vec<IpAddr>> {
    match host {
        "127.0.0.1" => Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        "::1" | "[::1]" => Some(vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]),
        // Not the resolver: /etc/hosts is the image's, and may say anything.
        "localhost" => Some(vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]),
        _ => None,
    }
}

/// Relays until the socket's data ends; the exit status and stderr say how it went.
pub(crate) fn run(host: &str, port: u16) -> ExitCode {
    let Some(addrs) = loopback(host) else {
        eprintln!(
            "devaipod-net relay: {host} is not this pod's loopback: the relay reaches only ports inside the pod (give 127.0.0.1, ::1 or localhost)"
        );
        return ExitCode::from(USAGE);
    };
    if port == 0 {
        eprintln!("devaipod-net relay: port 0 is not a port to connect to: give 1 to 65535");
        return ExitCode::from(USAGE);
    }
    let socket = match connect(&addrs, port) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            eprintln!(
                "devaipod-net relay: nothing listens on {host}:{port} in this pod (connection refused)"
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("devaipod-net relay: cannot connect to {host}:{port} in this pod: {e}");
            return ExitCode::FAILURE;
        }
    };
    match relay(socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devaipod-net relay: {host}:{port}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first address that accepts; else the first address's error (for `localhost`,
/// IPv4's: a refusal there says more than a missing IPv6).
fn connect(addrs: &[IpAddr], port: u16) -> io::Result<TcpStream> {
    let mut first = None;
    for ip in addrs {
        match TcpStream::connect(SocketAddr::new(*ip, port)) {
            Ok(s) => return Ok(s),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or_else(|| io::Error::other("no address to connect to")))
}

/// Copies `from` to `to` until `from` ends, each read written at once. Not
/// `io::copy`, which between a pipe and a socket uses splice: under a Podman exec, a
/// small request then reached the server only at the client's end of input (an HTTP
/// request through `ssh -L` never got its answer). Only a real Podman exec shows it:
/// tests/podman/openssh.rs (curl through `ssh -L`) is the test that catches it.
fn pump(from: &mut impl io::Read, to: &mut impl io::Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}

fn relay(socket: TcpStream) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let mut sending = socket.try_clone()?;
    // Raw fds 0 and 1, unbuffered: std's stdout holds bytes back until a newline, and
    // stdout must really close (fd 1 itself) when the socket's data ends.
    // SAFETY: fds 0 and 1 are this process's stdin and stdout, and nothing else here
    // reads or writes them; each File becomes their only owner.
    let (mut stdin, mut stdout) = unsafe { (File::from_raw_fd(0), File::from_raw_fd(1)) };
    let upstream = std::thread::spawn(move || {
        let r = pump(&mut stdin, &mut sending);
        // The end of stdin is the end of what we send; an error ends both directions.
        let how = if r.is_ok() {
            Shutdown::Write
        } else {
            Shutdown::Both
        };
        let _ = sending.shutdown(how);
        r.map_err(|e| io::Error::new(e.kind(), format!("sending: {e}")))
    });
    let mut receiving = socket;
    let down = pump(&mut receiving, &mut stdout)
        .map_err(|e| io::Error::new(e.kind(), format!("receiving: {e}")));
    drop(stdout);
    // The socket's data has ended: the relay ends too, without waiting for stdin (a
    // client that keeps its side open would otherwise hold the relay forever, and its
    // exit is the only end a Podman exec's attach stream reports). What stdin already
    // sent is in the socket's buffer and still delivered.
    drop(upstream);
    down.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_pass() {
        assert_eq!(
            loopback("127.0.0.1"),
            Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
        );
        assert_eq!(loopback("::1"), Some(vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]));
        assert_eq!(loopback("localhost").map(|a| a.len()), Some(2));
        for other in [
            "10.0.0.1",
            "127.0.0.2",
            "0.0.0.0",
            "example.com",
            "LOCALHOST.",
            "",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(loopback(other), None, "{other}");
        }
    }
}
