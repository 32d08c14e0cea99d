//! `devaipod-net relay HOST PORT` as a process against a listener of the test's own:
//! data both ways, the client's end passed on by itself (TCP half-close), the server's
//! end ending the relay, and the
//! refusals (nothing listening: exit 1; not the loopback: exit 2).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn relay(host: &str, port: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_devaipod-net"))
        .args(["relay", host, port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting devaipod-net relay")
}

/// Runs `f` on a thread; its result, or a panic after WAIT (so a hang fails the test).
struct Waiting<T>(mpsc::Receiver<T>, &'static str);

fn in_thread<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Waiting<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    Waiting(rx, what)
}

impl<T> Waiting<T> {
    #[track_caller]
    fn get(self) -> T {
        self.0
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("{}: nothing after {WAIT:?} ({e})", self.1))
    }
}

fn accept(listener: TcpListener) -> Waiting<TcpStream> {
    in_thread("accepting the relay's connection", move || {
        listener.accept().expect("accept").0
    })
}

fn read_all(mut r: impl Read + Send + 'static, what: &'static str) -> Waiting<Vec<u8>> {
    in_thread(what, move || {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).expect("reading to the end");
        buf
    })
}

fn exit_of(mut child: Child) -> Waiting<(ExitStatus, String)> {
    in_thread("the relay's exit", move || {
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("stderr");
        (child.wait().expect("wait"), err)
    })
}

#[test]
fn the_socket_ending_ends_the_relay_with_stdin_still_open() {
    // A server that answers and closes (HTTP/1.0, a banner): the client's stdin stays
    // open, and the relay must end anyway, since its exit is all a Podman exec's
    // attach stream reports as the end.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let conn = accept(listener);
    let mut child = relay("127.0.0.1", &port);
    let mut peer = conn.get();

    peer.write_all(b"from the pod").expect("write");
    drop(peer);
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let got = read_all(stdout, "the relay's stdout to its end").get();
    assert_eq!(got, b"from the pod");
    let (status, err) = exit_of(child).get();
    assert!(status.success(), "{status}: {err}");
    assert_eq!(err, "");
    drop(stdin);
}

#[test]
fn a_request_is_answered_while_stdin_stays_open() {
    // An HTTP/1.1 client: it sends a request and waits for the answer, its side open.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let conn = accept(listener);
    let mut child = relay("127.0.0.1", &port);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    stdin.flush().expect("flush");
    let mut peer = conn.get();
    let got = in_thread("the request, before stdin ends", move || {
        let mut buf = [0u8; 18];
        peer.read_exact(&mut buf).expect("read the request");
        peer.write_all(b"HTTP/1.1 200 OK\r\n").expect("answer");
        (buf.to_vec(), peer)
    })
    .get();
    assert_eq!(got.0, b"GET / HTTP/1.1\r\n\r\n");
    let mut stdout = child.stdout.take().expect("stdout");
    let answer = in_thread("the answer, before stdin ends", move || {
        let mut buf = [0u8; 17];
        stdout.read_exact(&mut buf).expect("read the answer");
        buf.to_vec()
    })
    .get();
    assert_eq!(answer, b"HTTP/1.1 200 OK\r\n");
    drop(got.1);
    drop(stdin);
    let (status, err) = exit_of(child).get();
    assert!(status.success(), "{status}: {err}");
}

#[test]
fn stdin_ends_first_then_the_socket_with_much_data_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let conn = accept(listener);
    let mut child = relay("localhost", &port);
    let peer = conn.get();

    let upload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut stdin = child.stdin.take().expect("stdin");
    let expected = upload.clone();
    let writer: JoinHandle<()> = std::thread::spawn(move || {
        stdin.write_all(&upload).expect("writing stdin");
    });
    // The peer sees the end of what was sent while its own side is still open, then
    // answers on it.
    let mut peer = peer;
    let got = in_thread("the upload to its end", move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).expect("read");
        let reply: Vec<u8> = format!("{} bytes\n", got.len()).repeat(50_000).into_bytes();
        peer.write_all(&reply).expect("reply");
        drop(peer);
        (got, reply)
    });
    writer.join().expect("the writer");
    let (got, reply) = got.get();
    assert!(
        got == expected,
        "the upload arrived changed ({} bytes)",
        got.len()
    );
    let stdout = child.stdout.take().expect("stdout");
    let answer = read_all(stdout, "the reply on stdout").get();
    assert!(
        answer == reply,
        "the reply arrived changed ({} bytes)",
        answer.len()
    );
    let (status, err) = exit_of(child).get();
    assert!(status.success(), "{status}: {err}");
}

#[test]
fn nothing_listening_is_exit_1_with_the_reason() {
    // A port that was just free: bound, then closed.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (status, err) = exit_of(relay("127.0.0.1", &port.to_string())).get();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        format!(
            "devaipod-net relay: nothing listens on 127.0.0.1:{port} in this pod (connection refused)\n"
        )
    );
}

#[test]
fn hosts_other_than_the_loopback_and_port_0_are_exit_2() {
    for host in ["10.1.2.3", "example.com", "0.0.0.0", "127.0.0.2"] {
        let (status, err) = exit_of(relay(host, "80")).get();
        assert_eq!(status.code(), Some(2), "{host}: {err}");
        assert!(
            err.starts_with(&format!(
                "devaipod-net relay: {host} is not this pod's loopback"
            )),
            "{err}"
        );
    }
    let (status, err) = exit_of(relay("::1", "0")).get();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("port 0 is not a port"), "{err}");
    let (status, err) = exit_of(relay("127.0.0.1", "http")).get();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("invalid value 'http'"), "{err}");
}
