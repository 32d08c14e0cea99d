//! fake-origin: the web servers and the DNS responder of the fake internet that the
//! network tests run offline (tests/net/fake-internet.sh).
//!
//! Usage:  fake-origin [--http ADDR]... [--dns ADDR=IP]...
//! HTTP:   every request is answered `200 OK` with the body `origin IP HOST\n`: IP is
//!         the local address the client reached, HOST the request's Host header (`-`
//!         when it sent none). So a test sees which server a proxy connected to, and
//!         under which name.
//! DNS:    UDP; every well-formed query of one question is answered: an A (or ANY)
//!         question with one A record, IP; any other type with no records. So a test
//!         can tell "DNS is blocked" from "nobody answers".

use std::io::{self, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::{thread, time::Duration};

const USAGE: &str = "usage: fake-origin [--http ADDR]... [--dns ADDR=IP]...";
const MAX_BODY: usize = 1 << 20;

#[path = "../shared.rs"]
mod shared;

use shared::read_request;

/// The body of every HTTP answer: where the client arrived, and the name it asked for.
fn origin_body(local: &SocketAddr, host: Option<&str>) -> String {
    format!("origin {} {}\n", local.ip(), host.unwrap_or("-"))
}

fn handle_http(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (local, peer) = (stream.local_addr()?, stream.peer_addr()?);
    let (mut reader, mut writer) = (BufReader::new(stream), stream);
    let Some(req) = read_request(&mut reader, &mut writer, MAX_BODY)? else {
        return Ok(());
    };
    let host = req.header("host");
    eprintln!(
        "fake-origin: {local} from {peer}: {} {} host={}",
        req.method,
        req.path,
        host.unwrap_or("-")
    );
    let body = origin_body(&local, host);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    writer.write_all(response.as_bytes())?;
    writer.flush()?;
    let _ = stream.shutdown(Shutdown::Write); // the peer may already be gone
    Ok(())
}

fn serve_http(listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(stream) = conn.map_err(|e| eprintln!("fake-origin: accept error: {e}")) else {
            continue;
        };
        thread::spawn(move || {
            if let Err(e) = handle_http(&stream) {
                eprintln!("fake-origin: connection error: {e}");
            }
        });
    }
}

/// The answer to one DNS query, or `None` for anything that is not a well-formed
/// standard query of one question (dropped, as a resolver would see a lost packet).
fn dns_answer(query: &[u8], ip: Ipv4Addr) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let counts = [
        &header[4..6],
        &header[6..8],
        &header[8..10],
        &header[10..12],
    ];
    let is_query = flags & 0x8000 == 0 && (flags >> 11) & 0xf == 0;
    if !is_query || counts.map(|c| u16::from_be_bytes([c[0], c[1]])) != [1, 0, 0, 0] {
        return None;
    }
    // The question's name: labels up to the root label, no compression.
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        i += len;
    }
    let tail = query.get(i..i + 4)?;
    let (qtype, qclass) = (
        u16::from_be_bytes([tail[0], tail[1]]),
        u16::from_be_bytes([tail[2], tail[3]]),
    );
    let with_record = qclass == 1 && (qtype == 1 || qtype == 255);
    let mut out = Vec::with_capacity(i + 4 + 16);
    out.extend_from_slice(&header[..2]);
    // QR, AA and the query's RD; NOERROR.
    out.extend_from_slice(&(0x8400 | (flags & 0x0100)).to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, u8::from(with_record), 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..i + 4]);
    if with_record {
        // A pointer to the question's name, A, IN, TTL 60, four bytes of address.
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

fn serve_dns(socket: UdpSocket, ip: Ipv4Addr) {
    let mut buf = [0u8; 512];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) => {
                eprintln!("fake-origin: dns receive error: {e}");
                continue;
            }
        };
        let Some(answer) = dns_answer(&buf[..n], ip) else {
            eprintln!("fake-origin: dns: dropped a malformed query from {peer}");
            continue;
        };
        eprintln!("fake-origin: dns: answered {peer}");
        if let Err(e) = socket.send_to(&answer, peer) {
            eprintln!("fake-origin: dns send error to {peer}: {e}");
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return Err(USAGE.into());
    }
    let mut servers: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for pair in args.chunks(2) {
        let (flag, value) = (pair[0].as_str(), pair[1].as_str());
        match flag {
            "--http" => {
                let listener =
                    TcpListener::bind(value).map_err(|e| format!("binding {value}: {e}"))?;
                servers.push(Box::new(move || serve_http(listener)));
            }
            "--dns" => {
                let (addr, ip) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--dns {value}: expected ADDR=IP"))?;
                let ip: Ipv4Addr = ip.parse().map_err(|e| {
                    format!("--dns {value}: the answer {ip:?} is no IPv4 address: {e}")
                })?;
                let socket = UdpSocket::bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
                servers.push(Box::new(move || serve_dns(socket, ip)));
            }
            _ => return Err(USAGE.into()),
        }
    }
    // Every socket is bound before this line: a reader of stdout may connect at once.
    println!("fake-origin listening: {}", args.join(" "));
    io::stdout().flush().map_err(|e| e.to_string())?;
    let threads: Vec<_> = servers.into_iter().map(thread::spawn).collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("fake-origin: {e}");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `allowed.test`, type `qtype`, with RD set.
    fn query(qtype: u8) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07allowed\x04test\x00");
        q.extend_from_slice(&[0, qtype, 0, 1]);
        q
    }

    #[test]
    fn dns_answers_an_a_question_with_the_address() {
        let ip = Ipv4Addr::new(198, 51, 100, 10);
        let q = query(1);
        let a = dns_answer(&q, ip).expect("an answer");
        assert_eq!(&a[..2], &[0xab, 0xcd], "the query's id");
        assert_eq!(&a[2..4], &[0x85, 0x00], "QR, AA, RD; NOERROR");
        assert_eq!(&a[4..12], &[0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&a[12..q.len()], &q[12..], "the question");
        assert_eq!(&a[a.len() - 4..], &[198, 51, 100, 10]);
        let aaaa = dns_answer(&query(28), ip).expect("an answer");
        assert_eq!(&aaaa[6..8], &[0, 0], "no record for AAAA");
        assert_eq!(aaaa.len(), q.len());
    }

    #[test]
    fn dns_drops_what_is_not_a_plain_query() {
        let ip = Ipv4Addr::LOCALHOST;
        let mut response = query(1);
        response[2] |= 0x80;
        let mut two = query(1);
        two[5] = 2;
        let truncated = &query(1)[..20];
        let mut long_label = query(1);
        long_label[12] = 64;
        for bad in [&response[..], &two, truncated, &long_label, &[0; 5]] {
            assert_eq!(dns_answer(bad, ip), None, "{bad:?}");
        }
    }

    #[test]
    fn http_body_names_the_address_and_the_host() {
        let local: SocketAddr = "203.0.113.10:80".parse().unwrap();
        assert_eq!(
            origin_body(&local, Some("other.test")),
            "origin 203.0.113.10 other.test\n"
        );
        assert_eq!(origin_body(&local, None), "origin 203.0.113.10 -\n");
    }
}
