//! devaipod-net: the network guard of a devaipod pod, and the helpers devaipod's SSH
//! server runs in the workspace. One static binary (so it runs in any image, glibc or
//! musl), these jobs:
//!
//! - `proxy`: the agent's only way out. HTTP CONNECT and plain HTTP to names on the
//!   pod's allowlist, and credential routes that add the provider's key on the way to
//!   its base URL (the agent never holds the key). Runs in the `proxy` container, as its
//!   own uid, with no capabilities.
//! - `rules`: installs the nftables rules of the pod's network namespace that confine the
//!   agent's uid to the proxy, the gator and its own loopback listeners, reads them back,
//!   and writes the marker the agent waits for. Runs in the pod's init container (the only
//!   one with CAP_NET_ADMIN), on every start of the pod.
//! - `gate`: run by the agent's command before opencode; returns only when the marker
//!   names the network namespace it runs in (so the agent never runs unfiltered).
//! - `allow` and `stats`: read and change a running proxy's allowlist, read its refusal
//!   counts (run by `podman exec` in the proxy container).
//! - `mcp-audit`: runs service-gator behind a relay that logs each MCP request of the
//!   agent's and its outcome (service-gator logs neither); the gator container's command.
//! - `sftp-server`: SFTP on stdin and stdout, for the `sftp` subsystem of an SSH session
//!   (OpenSSH's `sftp` and `scp`), as the calling user. Run by `podman exec` in the
//!   workspace container, where the image is mounted read-only at /opt/devaipod-net.
//! - `relay HOST PORT`: stdin to a TCP port of the pod's loopback and back, for SSH's
//!   `-L` and `-D` forwarding and `devaipod forward`. Run the same way.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod accept;
mod audit;
mod config;
mod gate;
mod nft;
mod policy;
mod proxy;
mod relay;
mod rules;
mod sftp;
mod state;
mod upstream;

#[derive(Parser)]
#[command(
    name = "devaipod-net",
    version,
    about = "The network guard of a devaipod pod, and its SSH helpers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the agent's proxy (HTTP CONNECT, plain HTTP, credential routes)
    Proxy {
        /// devaipod's configuration of the proxy (JSON, `config::Config`)
        #[arg(long)]
        config: PathBuf,
        /// The proxy's state directory (its allowlist as changed by `allow`, its counts)
        #[arg(long)]
        state: PathBuf,
    },
    /// Install the agent's nftables rules in this network namespace, read them back,
    /// then write the marker the agent's gate waits for
    Rules {
        /// The agent's uid
        #[arg(long)]
        agent_uid: u32,
        /// The agent's opencode port: the only port on which the agent's listeners
        /// accept connections of other uids
        #[arg(long)]
        agent_port: u16,
        /// A listener of another uid the agent may reach on the loopback: UID:PORT
        /// (the proxy, the gator)
        #[arg(long = "allow-reply", value_name = "UID:PORT")]
        allow_reply: Vec<String>,
        /// Where to write the marker (on a volume the agent mounts read-only)
        #[arg(long)]
        marker: PathBuf,
    },
    /// Wait until the marker names this network namespace; fail after the timeout
    Gate {
        #[arg(long)]
        marker: PathBuf,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Print (and change) the running proxy's allowlist
    Allow {
        #[arg(long)]
        state: PathBuf,
        /// Names to add (NAME or NAME:PORT, `*.` for subdomains)
        #[arg(long = "add", value_name = "NAME")]
        add: Vec<String>,
        /// Names to remove
        #[arg(long = "remove", value_name = "NAME")]
        remove: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the proxy's decision counts and the last refused names
    Stats {
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run service-gator (SERVER ARGS..., listening on --upstream) behind a relay on
    /// --listen that logs each MCP request of the agent and its outcome; exit with its
    /// status
    McpAudit {
        /// Where the agent reaches the gator (the pod's loopback)
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Where the server listens
        #[arg(long)]
        upstream: std::net::SocketAddr,
        /// The server's command line
        #[arg(last = true, required = true, value_name = "SERVER")]
        server: Vec<std::ffi::OsString>,
    },
    /// Serve SFTP (version 3, with OpenSSH's extensions) on stdin and stdout, as the
    /// calling user; relative paths are from the current directory
    SftpServer,
    /// Copy stdin to a TCP port of this pod's loopback, and its replies to stdout, until
    /// both have ended. Exit status 1 when nothing listens, 2 when HOST is not the loopback
    Relay {
        /// 127.0.0.1, ::1 or localhost
        host: String,
        /// A TCP port, 1 to 65535
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Proxy { config, state } => proxy::run(&config, &state),
        Command::Rules {
            agent_uid,
            agent_port,
            allow_reply,
            marker,
        } => rules::run(agent_uid, agent_port, &allow_reply, &marker),
        Command::Gate {
            marker,
            timeout_secs,
        } => gate::run(&marker, timeout_secs),
        Command::Allow {
            state,
            add,
            remove,
            json,
        } => state::allow_command(&state, &add, &remove, json),
        Command::Stats { state, json } => state::stats_command(&state, json),
        Command::SftpServer => sftp::run(),
        Command::Relay { host, port } => return relay::run(&host, port),
        Command::McpAudit {
            listen,
            upstream,
            server,
        } => return audit::run(listen, upstream, &server),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devaipod-net: {e:#}");
            ExitCode::FAILURE
        }
    }
}
