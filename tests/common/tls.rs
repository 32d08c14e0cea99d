//! An HTTPS file server on 127.0.0.1 for the tarball-Feature tests: a test CA and a
//! certificate for 127.0.0.1 and localhost made with the `openssl` CLI (`just setup`
//! installs it, tests/registry/registry.sh makes registry B's the same way), and a
//! small rustls server on a thread that answers `GET /NAME` with a file or 404. It
//! stops when dropped; it serves only loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A test CA (`ca.pem`) and a server certificate it signed for 127.0.0.1 and
/// localhost (`server.pem`, `server.key`), plus a self-signed one nobody trusts
/// (`rogue.pem`, `rogue.key`), in a temporary folder.
pub struct TestCa {
    dir: tempfile::TempDir,
}

#[track_caller]
fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl cannot run ({e}): install it with `just setup`"));
    assert!(
        o.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

impl TestCa {
    #[track_caller]
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=devaipod tarball test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(d, &ca);
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(d, &csr);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "0x1d",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        // The same names, signed by no one the client trusts.
        let mut rogue = vec!["req", "-x509"];
        rogue.extend(ec);
        rogue.extend([
            "-keyout",
            "rogue.key",
            "-out",
            "rogue.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ]);
        openssl(d, &rogue);
        Self { dir }
    }

    /// The CA's PEM: what SSL_CERT_FILE names for devaipod to trust the server.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server with the CA's certificate.
    pub fn serve(&self, files: &[(&str, Vec<u8>)]) -> HttpsServer {
        HttpsServer::start(&self.dir.path().join("server"), files)
    }

    /// A server with the self-signed certificate.
    pub fn serve_rogue(&self, files: &[(&str, Vec<u8>)]) -> HttpsServer {
        HttpsServer::start(&self.dir.path().join("rogue"), files)
    }
}

/// The files a server answers with, by path (`/NAME`); replaceable while it runs.
type Files = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An HTTPS server on 127.0.0.1 (a free port), stopped when dropped.
pub struct HttpsServer {
    addr: SocketAddr,
    files: Files,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpsServer {
    /// `stem`.pem and `stem`.key: the certificate chain and key it presents.
    #[track_caller]
    fn start(stem: &Path, files: &[(&str, Vec<u8>)]) -> Self {
        let pem = stem.with_extension("pem");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pem)
            .expect("read the certificate")
            .collect::<Result<_, _>>()
            .expect("parse the certificate");
        let key = PrivateKeyDer::from_pem_file(stem.with_extension("key")).expect("read the key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("the server's certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let files: Files = Arc::new(Mutex::new(
            files
                .iter()
                .map(|(p, b)| (format!("/{p}"), b.clone()))
                .collect(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let (served, flag) = (files.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = conn {
                    // One connection at a time: devaipod makes one request per feature.
                    let _ = answer(stream, config.clone(), &served);
                }
            }
        });
        Self {
            addr,
            files,
            stop,
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.addr.port())
    }

    /// Serves `bytes` at `/NAME` from now on (a file that changed on the server).
    pub fn replace(&self, name: &str, bytes: Vec<u8>) {
        let mut files = self.files.lock().expect("files");
        let path = format!("/{name}");
        files.retain(|(p, _)| *p != path);
        files.push((path, bytes));
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request: the TLS handshake (which fails when the client does not trust the
/// certificate), the request line, the file or a 404.
fn answer(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    files: &Files,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut reader = BufReader::new(&mut tls);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
    let body = files
        .lock()
        .expect("files")
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, b)| b.clone());
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())?;
    tls.write_all(&body)?;
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(())
}
