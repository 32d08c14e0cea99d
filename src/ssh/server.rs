//! The SSH server side, over devaipod's stdin and stdout (the ProxyCommand of the
//! entries `devaipod ssh-config` writes): the client authenticates with one of the
//! user's own keys, and each channel becomes a Podman exec in the workspace, as its
//! remoteUser in its folder with remoteEnv:
//!
//! - `exec` and `shell` (with or without a pty): the user's shell; exit codes, window
//!   changes and signals pass through; postAttachCommand runs before a shell;
//! - the `sftp` subsystem: devaipod-net's SFTP server, in the workspace;
//! - `direct-tcpip` (`ssh -L`, `ssh -D`): devaipod-net's relay, in the workspace, to a
//!   port on the pod's loopback (rootless, the host cannot dial the pod's network);
//! - agent forwarding, X11, remote forwarding (`-R`) and unix sockets are refused, with a
//!   line on stderr (which OpenSSH shows) saying so.
//!
//! Nothing but the protocol is written to stdout. The server opens no listener.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, bail};
use futures_util::{AsyncWriteExt as _, StreamExt as _};
use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, MethodKind, MethodSet, Sig};
use tokio::io::AsyncWriteExt as _;

use super::keys::{self, PodKeys};
use crate::cli::Context;
use crate::names::Name;
use crate::podman::Engine;
use crate::podman::exec::{ExecOutput, ExecSpec};
use crate::podman::session::{LOGIN_SHELL, WorkspaceSession};

/// Runs a command line the way sshd does: with the user's login shell's `-c`.
const EXEC_SHELL: &str = "u=$(id -un 2>/dev/null); s=$(getent passwd \"$u\" 2>/dev/null | cut -d: -f7); [ -x \"$s\" ] || s=/bin/sh; exec \"$s\" -c \"$1\"";

/// What every channel of the connection shares.
struct Shared {
    engine: Engine,
    ws: WorkspaceSession,
    name: Name,
    /// The keys a client may authenticate with.
    allowed: Vec<PublicKey>,
    /// Why the workspace cannot run devaipod-net (SFTP, forwarding), if it cannot.
    no_helper: Option<String>,
    /// Running terminal sessions by exec id: hung up when the client goes away.
    ttys: Mutex<HashMap<String, ()>>,
}

impl Shared {
    /// A line for the user: on stderr, which OpenSSH passes to the terminal.
    fn notice(&self, msg: &str) {
        let mut err = std::io::stderr().lock();
        let _ = std::io::Write::write_all(&mut err, notice_line(msg).as_bytes());
    }
}

/// One line of devaipod's own on the user's terminal (the ProxyCommand's stderr, or a
/// channel's): `msg` quotes what the client sent (a host name), the repo's settings or
/// the engine's errors, so its control characters are shown, not sent.
fn notice_line(msg: &str) -> String {
    format!("devaipod: {}\r\n", crate::terminal::line(msg))
}

/// Speaks SSH on stdin/stdout for pod `name` until the client goes away.
pub(crate) async fn serve_stdio(_ctx: &Context, name: &Name) -> Result<ExitCode> {
    let keys = PodKeys::of(name)?;
    let host_key = keys.host_key()?;
    // Its own connection: the channels' tasks hold it for as long as they run.
    let engine = Engine::connect().await?;
    let ws = crate::podman::session::workspace_session(&engine, name).await?;
    let no_helper = crate::cli::forward_check_helper(&engine, &ws)
        .await
        .err()
        .map(|e| format!("{e:#}"));
    let allowed = keys::user_keys().await;
    if allowed.is_empty() {
        bail!(
            "no SSH public key to accept: devaipod accepts the keys of ~/.ssh/*.pub and of the SSH agent; make one with `ssh-keygen -t ed25519`"
        );
    }
    let shared = Arc::new(Shared {
        engine,
        ws,
        name: name.clone(),
        allowed,
        no_helper,
        ttys: Mutex::new(HashMap::new()),
    });
    let config = Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard(
            concat!("SSH-2.0-devaipod_", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        keys: vec![host_key],
        auth_rejection_time: std::time::Duration::from_millis(300),
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        // The client's end of stdio going away ends the session; idle is fine.
        inactivity_timeout: None,
        nodelay: false,
        ..Default::default()
    });
    let handler = Handler {
        shared: shared.clone(),
        started: HashMap::new(),
    };
    let stream = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
    let session = russh::server::run_stream(config, stream, handler)
        .await
        .context("starting the SSH session")?;
    // OpenSSH hangs up its ProxyCommand (SIGHUP) when it exits; devaipod then hangs up
    // the terminals it runs, as sshd would.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ended = tokio::select! {
        r = session => r.map(|_| ()),
        _ = hup.recv() => Ok(()),
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    hang_up_all(&shared).await;
    match ended {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A client that goes away mid-packet is not devaipod's error.
        Err(e) if is_disconnect(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.context(format!("the SSH session of {}", shared.name))),
    }
}

/// Whether `e` only says the client went away.
fn is_disconnect(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
            );
        }
        if let Some(r) = c.downcast_ref::<russh::Error>() {
            return match r {
                russh::Error::Disconnect | russh::Error::HUP => true,
                russh::Error::IO(io) => matches!(
                    io.kind(),
                    std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                ),
                _ => false,
            };
        }
        false
    })
}

/// Sends SIGHUP to every terminal session still running.
async fn hang_up_all(shared: &Shared) {
    let ids: Vec<String> = shared
        .ttys
        .lock()
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    for id in ids {
        let _ = signal_exec(shared, &id, "HUP").await;
    }
}

/// The per-connection protocol handler: authentication and the replies to requests; the
/// channels' work is done by their tasks.
struct Handler {
    shared: Arc<Shared>,
    /// Session channels that have started their command (a second one is refused).
    started: HashMap<ChannelId, bool>,
}

impl Handler {
    fn start(&mut self, channel: ChannelId) -> bool {
        match self.started.get_mut(&channel) {
            Some(started @ false) => {
                *started = true;
                true
            }
            _ => false,
        }
    }

    fn is_open_unstarted(&self, channel: ChannelId) -> bool {
        self.started.get(&channel) == Some(&false)
    }
}

/// Whether an environment request may set `name`: a shell variable name.
pub(crate) fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 255
}

/// The relay's HOST for `host`, when `host` names the pod's own loopback: the address
/// the client asked for (`::1` stays IPv6; `localhost` is both, as the relay reads it).
pub(crate) fn loopback_target(host: &str) -> Option<&'static str> {
    match host.to_ascii_lowercase().as_str() {
        "127.0.0.1" => Some("127.0.0.1"),
        "::1" | "[::1]" => Some("::1"),
        "localhost" | "localhost." => Some("localhost"),
        _ => None,
    }
}

/// Answers a channel request: success or failure.
fn reply(session: &mut Session, channel: ChannelId, ok: bool) -> Result<()> {
    if ok {
        session.channel_success(channel)?;
    } else {
        session.channel_failure(channel)?;
    }
    Ok(())
}

impl russh::server::Handler for Handler {
    type Error = anyhow::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(
            if keys::is_allowed(offer.public_key, &self.shared.allowed) {
                Auth::Accept
            } else {
                Auth::reject()
            },
        )
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if keys::is_allowed(key.public_key, &self.shared.allowed) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.started.insert(channel.id(), false);
        reply.accept().await;
        tokio::spawn(session_channel(self.shared.clone(), channel));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let port = match u16::try_from(port_to_connect) {
            Ok(p) if p > 0 => p,
            _ => {
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return Ok(());
            }
        };
        let Some(host) = loopback_target(host_to_connect) else {
            self.shared.notice(&format!(
                "forwarding to {host_to_connect}:{port} refused: devaipod forwards only to ports inside the pod (127.0.0.1, ::1 or localhost)"
            ));
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if let Some(why) = &self.shared.no_helper {
            self.shared.notice(why);
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        }
        reply.accept().await;
        tokio::spawn(relay_channel(self.shared.clone(), channel, host, port));
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shared.notice(&format!(
            "forwarding to the unix socket {socket_path:?} refused: devaipod forwards only TCP ports"
        ));
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.started.remove(&channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.is_open_unstarted(channel);
        reply(session, channel, ok)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.is_open_unstarted(channel) && valid_env_name(variable_name);
        reply(session, channel, ok)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.start(channel);
        reply(session, channel, ok)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.start(channel);
        reply(session, channel, ok)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp"
            && let Some(why) = &self.shared.no_helper
        {
            self.shared.notice(why);
            session.channel_failure(channel)?;
        } else if name == "sftp" && self.start(channel) {
            session.channel_success(channel)?;
        } else {
            if name != "sftp" {
                self.shared.notice(&format!(
                    "the subsystem {name:?} is not served: devaipod serves only sftp"
                ));
            }
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shared
            .notice("X11 forwarding (-X, -Y) is refused: devaipod does not forward X11");
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.shared.notice(
            "agent forwarding (-A) is refused: the workspace has its own credentials, and devaipod never hands it the keys of your SSH agent",
        );
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.shared.notice(&format!(
            "remote forwarding (-R {address}:{port}) is refused: nothing in the pod may open connections to the host through devaipod"
        ));
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.shared.notice(&format!(
            "remote forwarding of the unix socket {socket_path:?} is refused"
        ));
        Ok(false)
    }
}

/// What a session channel asked for before it started.
#[derive(Debug, Default)]
struct Request {
    env: BTreeMap<String, String>,
    /// TERM, columns, rows.
    pty: Option<(String, u16, u16)>,
}

/// What a session channel runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    Shell,
    Exec(String),
    Sftp,
}

/// A terminal dimension from the client (0 means "unknown": a classic 80x24 then).
fn dim(v: u32, default: u16) -> u16 {
    match u16::try_from(v) {
        Ok(0) | Err(_) => default,
        Ok(v) => v,
    }
}

/// The exec a session channel runs.
fn session_spec(ws: &WorkspaceSession, req: &Request, start: &Start) -> ExecSpec {
    let argv: Vec<String> = match start {
        Start::Shell => vec!["/bin/sh".into(), "-c".into(), LOGIN_SHELL.into()],
        Start::Exec(cmd) => vec![
            "/bin/sh".into(),
            "-c".into(),
            EXEC_SHELL.into(),
            "devaipod".into(),
            cmd.clone(),
        ],
        Start::Sftp => vec![super::relay::helper_path(), "sftp-server".into()],
    };
    // The client's variables first; remoteEnv (the workspace's own definition) wins.
    let mut env = req.env.clone();
    env.extend(ws.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let tty = match (&req.pty, start) {
        (Some((term, cols, rows)), Start::Shell | Start::Exec(_)) => {
            env.insert("TERM".into(), term.clone());
            Some((*cols, *rows))
        }
        _ => None,
    };
    ExecSpec {
        container: ws.workspace.clone(),
        argv,
        user: ws.user.clone(),
        workdir: ws.workdir.clone(),
        env: env.into_iter().collect(),
        tty,
    }
}

/// A session channel: collects its requests, runs its command, relays its data.
async fn session_channel(shared: Arc<Shared>, channel: Channel<Msg>) {
    let (mut rx, tx) = channel.split();
    let mut req = Request::default();
    let start = loop {
        match rx.wait().await {
            None | Some(ChannelMsg::Close | ChannelMsg::Eof) => return,
            Some(ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                ..
            }) => {
                if req.pty.is_none() {
                    req.pty = Some((term, dim(col_width, 80), dim(row_height, 24)));
                }
            }
            Some(ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            }) => {
                if valid_env_name(&variable_name) && !variable_value.contains('\0') {
                    req.env.insert(variable_name, variable_value);
                }
            }
            Some(ChannelMsg::RequestShell { .. }) => break Start::Shell,
            Some(ChannelMsg::Exec { command, .. }) => {
                break Start::Exec(String::from_utf8_lossy(&command).into_owned());
            }
            Some(ChannelMsg::RequestSubsystem { name, .. }) if name == "sftp" => break Start::Sftp,
            Some(_) => {}
        }
    };
    let spec = session_spec(&shared.ws, &req, &start);
    let tty = spec.tty.is_some();
    let mut stderr = tx.make_writer_ext(Some(1));
    if start == Start::Shell {
        post_attach(&shared, &mut stderr, tty).await;
    }
    let attach = match shared.engine.exec_attach(&spec).await {
        Ok(a) => a,
        Err(e) => {
            let _ = stderr
                .write_all(notice_line(&format!("{e:#}")).as_bytes())
                .await;
            let _ = tx.exit_status(255).await;
            let _ = tx.eof().await;
            let _ = tx.close().await;
            return;
        }
    };
    let id = attach.id.clone();
    if tty && let Ok(mut t) = shared.ttys.lock() {
        t.insert(id.clone(), ());
    }
    let mut stdout = tx.make_writer();
    let mut output = attach.output;
    let out = tokio::spawn(async move {
        while let Some(chunk) = output.next().await {
            let r = match chunk {
                Ok(ExecOutput::Stdout(b)) => stdout.write_all(&b).await,
                Ok(ExecOutput::Stderr(b)) => stderr.write_all(&b).await,
                Err(_) => break,
            };
            if r.is_err() {
                break;
            }
        }
        let _ = stdout.flush().await;
        let _ = stderr.flush().await;
    });
    let mut input = attach.input;
    let mut out = out;
    let mut closed = false;
    loop {
        tokio::select! {
            _ = &mut out => break,
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    // An error: the process closed its stdin; its output may go on.
                    // The attach connection buffers, so each piece is flushed.
                    if input.write_all(&data).await.is_ok() {
                        let _ = input.flush().await;
                    }
                }
                // A terminal has no end of input to pass on (sshd ignores it too).
                Some(ChannelMsg::Eof) if !tty => {
                    let _ = input.close().await;
                }
                Some(ChannelMsg::WindowChange { col_width, row_height, .. }) if tty => {
                    let _ = shared
                        .engine
                        .exec_resize(&id, dim(col_width, 80), dim(row_height, 24))
                        .await;
                }
                Some(ChannelMsg::Signal { signal }) => match sig_name(&signal) {
                    Some(sig) => {
                        if let Err(e) = signal_exec(&shared, &id, sig).await {
                            shared.notice(&format!("{e:#}"));
                        }
                    }
                    // As sshd: a signal it cannot name is not sent (never another one).
                    None => shared.notice(&format!(
                        "the client's signal {signal:?} is not a signal name: not sent"
                    )),
                },
                None | Some(ChannelMsg::Close) => {
                    closed = true;
                    break;
                }
                Some(_) => {}
            }
        }
    }
    if closed {
        // The client went away first: hang up a terminal, as closing a pty would.
        if tty {
            let _ = signal_exec(&shared, &id, "HUP").await;
        }
        out.abort();
    }
    if let Ok(mut t) = shared.ttys.lock() {
        t.remove(&id);
    }
    if closed {
        return;
    }
    let code = shared.engine.exec_exit_code(&id).await.unwrap_or(255);
    let _ = tx.exit_status(u32::try_from(code).unwrap_or(255)).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

/// A line postAttachCommand printed, as `devaipod ssh` shows it: marked as the command's
/// and escaped (it is the repo's command, and may print what the agent wrote, such as
/// commit subjects).
fn post_attach_line(label: &str, line: &str) -> String {
    format!("[{label}] {}", crate::terminal::line(line))
}

/// Runs postAttachCommand (the features', then the config's) before a shell, its output
/// on the channel's stderr; a failure is reported there and the shell starts anyway.
async fn post_attach(
    shared: &Shared,
    stderr: &mut (impl tokio::io::AsyncWrite + Unpin),
    tty: bool,
) {
    for step in &shared.ws.post_attach {
        post_attach_step(shared, step, stderr, tty).await;
    }
}

/// One step of postAttachCommand (an object's commands in parallel).
async fn post_attach_step(
    shared: &Shared,
    step: &crate::plan::LifecycleStep,
    stderr: &mut (impl tokio::io::AsyncWrite + Unpin),
    tty: bool,
) {
    let eol = if tty { "\r\n" } else { "\n" };
    // The labels reach the client's terminal: escaped, like every line.
    let name = crate::terminal::line(&step.name()).into_owned();
    let jobs: Vec<(String, Vec<String>)> = match &step.command {
        crate::plan::Command::Parallel(map) => map
            .iter()
            .map(|(k, c)| (format!("{name}.{}", crate::terminal::line(k)), c.argv()))
            .collect(),
        c => vec![(name.clone(), c.argv())],
    };
    let env: Vec<(String, String)> = shared
        .ws
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let workdir = shared.ws.workdir.as_deref().unwrap_or("/");
    let (send, mut recv) = tokio::sync::mpsc::unbounded_channel::<String>();
    let runs = jobs.iter().map(|(label, argv)| {
        let send = send.clone();
        let env = &env;
        async move {
            let on_line = |line: &str| {
                let _ = send.send(post_attach_line(label, line));
            };
            let r = shared
                .engine
                .exec_lines(
                    &shared.ws.workspace,
                    argv,
                    shared.ws.user.as_deref(),
                    workdir,
                    env,
                    &on_line,
                )
                .await;
            match r {
                Ok(0) => {}
                Ok(code) => {
                    let _ = send.send(format!("{label} failed with exit code {code}"));
                }
                Err(e) => {
                    let _ = send.send(format!(
                        "{label}: {}",
                        crate::terminal::line(&format!("{e:#}"))
                    ));
                }
            }
        }
    });
    let all = futures_util::future::join_all(runs);
    drop(send);
    let print = async {
        while let Some(line) = recv.recv().await {
            let _ = stderr.write_all(format!("{line}{eol}").as_bytes()).await;
        }
    };
    tokio::join!(all, print);
}

/// A `direct-tcpip` channel: devaipod-net's relay in the workspace, to `host:port` on
/// the pod's loopback, its stdio the channel's data.
async fn relay_channel(shared: Arc<Shared>, channel: Channel<Msg>, host: &str, port: u16) {
    match super::relay::start(&shared.engine, &shared.ws, host, port).await {
        Ok(attach) => {
            let said = super::relay::pipe(attach, channel.into_stream()).await;
            if !said.is_empty() {
                shared.notice(&said);
            }
        }
        Err(e) => {
            shared.notice(&format!("forwarding to port {port}: {e:#}"));
            let _ = channel.close().await;
        }
    }
}

/// The signal's name as `kill -s` takes it; a client's custom name is passed only when
/// it is a plain word (the shell's `kill` refuses an unknown one), anything else is not
/// a signal (`None`: sent as no signal at all, as sshd does).
fn sig_name(sig: &Sig) -> Option<&str> {
    Some(match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(s)
            if !s.is_empty() && s.len() <= 8 && s.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            s
        }
        Sig::Custom(_) => return None,
    })
}

/// The PID, in its own PID namespace, of the process whose /proc/PID/status this is
/// (the last field of `NSpid`); `None` unless the process is in a nested namespace (a
/// container's), so a PID reused by a process of ours is never signalled.
pub(crate) fn inner_pid(status: &str) -> Option<u32> {
    let fields: Vec<&str> = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .collect();
    if fields.len() < 2 {
        return None;
    }
    fields.last()?.parse().ok()
}

/// The start time of the process whose /proc/PID/stat this is (field 22, in clock
/// ticks since boot: the same number on the host and in the container), which tells
/// the process from a later one given the same PID.
pub(crate) fn start_time(stat: &str) -> Option<u64> {
    // The name (field 2) is in parentheses and may hold anything, `)` and spaces too.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Exit status of [`kill_script`] when PID is no longer the process that started at
/// START: it ended, and its PID may be another process's now.
const GONE: i64 = 3;

/// The shell command, run as root in the workspace, that sends `sig` to `pid` only if
/// that process started at `start` (a PID reused since is left alone).
pub(crate) fn kill_script(sig: &str, pid: u32, start: u64) -> String {
    format!(
        "read -r s < /proc/{pid}/stat || exit {GONE}; s=${{s##*) }}; set -- $s; [ \"${{20}}\" = {start} ] || exit {GONE}; kill -s {sig} {pid}"
    )
}

/// Sends signal `sig` to exec session `id`'s process. Podman's exec API cannot signal:
/// the process's PID comes from the exec's inspect, and root in the workspace signals
/// it there (the host's user may not signal a process of a mapped uid, rootless), if
/// that PID is still the same process (its start time, read here, is checked there).
async fn signal_exec(shared: &Shared, id: &str, sig: &str) -> Result<()> {
    let inspect = shared.engine.exec_inspect(id).await?;
    if !inspect.running || inspect.pid <= 0 {
        return Ok(());
    }
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{}/{file}", inspect.pid)).with_context(|| {
            format!(
                "cannot signal the session's process: its PID {} is not visible here (is the engine on another machine?)",
                inspect.pid
            )
        })
    };
    // stat first: should the PID be reused before status is read, the start time is
    // the old process's and the check in the workspace refuses.
    let start = start_time(&read("stat")?)
        .context("reading the session process's start time (/proc/PID/stat)")?;
    let pid = inner_pid(&read("status")?)
        .context("reading the session process's PID in its namespace")?;
    let argv = vec!["/bin/sh".into(), "-c".into(), kill_script(sig, pid, start)];
    let code = shared
        .engine
        .exec_lines(&shared.ws.workspace, &argv, Some("0"), "/", &[], &|_| {})
        .await?;
    match code {
        0 => Ok(()),
        // The process ended meanwhile: nothing is left to signal.
        GONE => Ok(()),
        _ => bail!("signalling the session's process ({sig}) failed with exit code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> WorkspaceSession {
        WorkspaceSession {
            workspace: "devaipod-demo-workspace".into(),
            user: Some("dev".into()),
            workdir: Some("/workspaces/demo".into()),
            env: [("EDITOR".to_string(), "vi".to_string())].into(),
            post_attach: Vec::new(),
        }
    }

    #[test]
    fn an_exec_runs_through_the_users_shell_with_remote_env_winning() {
        let req = Request {
            env: [
                ("LANG".to_string(), "C.UTF-8".to_string()),
                ("EDITOR".to_string(), "nano".to_string()),
            ]
            .into(),
            pty: None,
        };
        let spec = session_spec(&ws(), &req, &Start::Exec("pwd; id -un".into()));
        assert_eq!(spec.argv[..3], ["/bin/sh", "-c", EXEC_SHELL]);
        assert_eq!(spec.argv[3..], ["devaipod", "pwd; id -un"]);
        assert_eq!(spec.user.as_deref(), Some("dev"));
        assert_eq!(spec.workdir.as_deref(), Some("/workspaces/demo"));
        assert!(spec.env.contains(&("LANG".into(), "C.UTF-8".into())));
        assert!(spec.env.contains(&("EDITOR".into(), "vi".into())));
        assert_eq!(spec.tty, None);
    }

    #[test]
    fn a_pty_sets_term_and_size_but_never_for_sftp() {
        let req = Request {
            env: BTreeMap::new(),
            pty: Some(("xterm-256color".into(), 120, 40)),
        };
        let shell = session_spec(&ws(), &req, &Start::Shell);
        assert_eq!(shell.tty, Some((120, 40)));
        assert!(
            shell
                .env
                .contains(&("TERM".into(), "xterm-256color".into()))
        );
        let sftp = session_spec(&ws(), &req, &Start::Sftp);
        assert_eq!(sftp.tty, None);
        assert_eq!(
            sftp.argv,
            [crate::ssh::relay::helper_path(), "sftp-server".to_string()]
        );
    }

    #[test]
    fn env_names_and_forwarding_hosts_are_checked() {
        assert!(valid_env_name("LC_ALL"));
        assert!(valid_env_name("_x1"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name("A=B"));
        assert!(!valid_env_name(""));
        for (asked, relayed) in [
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("localhost", "localhost"),
            ("LOCALHOST", "localhost"),
            ("localhost.", "localhost"),
        ] {
            assert_eq!(loopback_target(asked), Some(relayed), "{asked}");
        }
        for other in [
            "127.0.0.2",
            "127.1",
            "0x7f000001",
            "2130706433",
            "127.0.0.1.evil",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]",
            "0.0.0.0",
            "",
            "example.com",
            "10.0.0.1",
        ] {
            assert_eq!(loopback_target(other), None, "{other}");
        }
    }

    #[test]
    fn the_inner_pid_is_the_last_of_nspid() {
        let status = "Name:\tsleep\nPid:\t4242\nNSpid:\t4242\t17\nPPid:\t1\n";
        assert_eq!(inner_pid(status), Some(17));
        assert_eq!(
            inner_pid("Name:\tx\nNSpid:\t99\n"),
            None,
            "not in a container"
        );
        assert_eq!(inner_pid("Name:\tx\n"), None);
    }

    #[test]
    fn devaipods_own_lines_show_control_characters_escaped() {
        use crate::terminal::testing::{HOSTILE, assert_inert};
        let notice = notice_line(&format!("forwarding to {HOSTILE}:80 refused"));
        assert!(notice.starts_with("devaipod: forwarding to "), "{notice}");
        assert!(notice.ends_with(":80 refused\r\n"), "{notice}");
        assert_inert(notice.trim_end_matches("\r\n"));
        // A message that holds a newline stays one line: it cannot forge a second one.
        assert_eq!(
            notice_line("a\ndevaipod: forged"),
            "devaipod: a\\x0adevaipod: forged\r\n"
        );
        let line = post_attach_line("postAttachCommand", HOSTILE);
        assert!(line.starts_with("[postAttachCommand] "), "{line}");
        assert_inert(&line);
    }

    #[test]
    fn odd_signal_names_are_not_sent() {
        assert_eq!(sig_name(&Sig::INT), Some("INT"));
        assert_eq!(sig_name(&Sig::Custom("WINCH".into())), Some("WINCH"));
        assert_eq!(sig_name(&Sig::Custom("X; rm -rf /".into())), None);
        assert_eq!(sig_name(&Sig::Custom(String::new())), None);
        assert_eq!(sig_name(&Sig::Custom("TOOLONGNAME".into())), None);
    }

    #[test]
    fn the_start_time_is_field_22_whatever_the_name() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21";
        assert_eq!(start_time(&format!("17 (sleep) {tail}")), Some(424242));
        // A name that imitates the fields after it.
        assert_eq!(
            start_time(&format!(
                "17 (a) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 9 x) {tail}"
            )),
            Some(424242)
        );
        assert_eq!(start_time("17 (sleep) S 1 2"), None);
        assert_eq!(start_time("garbage"), None);
    }

    /// The in-workspace check, run by the host's /bin/sh against a process of its own
    /// (its PID in the host's namespace is its inner PID too).
    #[test]
    fn the_kill_script_signals_only_the_process_that_started_then() {
        let run = |script: &str| {
            std::process::Command::new("/bin/sh")
                .args(["-c", script])
                .status()
                .expect("/bin/sh runs")
                .code()
        };
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep runs");
        let pid = child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let start = start_time(&stat).expect("start time");
        assert_eq!(
            run(&kill_script("TERM", pid, start + 1)),
            Some(i32::try_from(GONE).expect("small")),
            "another start time: not signalled"
        );
        assert_eq!(child.try_wait().expect("wait"), None, "still running");
        assert_eq!(run(&kill_script("TERM", pid, start)), Some(0));
        let status = child.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
        // The process is gone (and reaped): its PID is refused, not signalled.
        assert_eq!(
            run(&kill_script("TERM", pid, start)),
            Some(i32::try_from(GONE).expect("small"))
        );
    }
}
