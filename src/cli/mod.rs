//! The command line: one module per command, each with its clap `Args` and `run()`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod config;
mod context;
mod delete;
mod doctor;
mod feature;
mod forward;
mod gc;
mod image;
mod initialize;
mod lifecycle;
mod list;
mod logs;
mod network;
mod review;
mod ssh;
mod ssh_config;
mod status;
mod task;
mod up;

pub(crate) use context::Context;
pub(crate) use forward::check_helper as forward_check_helper;

/// `devaipod --version`: the version and the git commit it was built from.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DEVAIPOD_GIT_COMMIT"),
    ")"
);

/// Run AI coding agents sandboxed in reproducible dev environments (rootless Podman pods).
#[derive(Debug, Parser)]
#[command(name = "devaipod", version = LONG_VERSION, about, long_about = None)]
pub struct Cli {
    /// More log output (-v info, -vv debug); also RUST_LOG
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a pod for a repo (workspace + sandboxed agent) and wait until the agent is ready
    Up(up::UpArgs),
    /// List devaipod workspaces
    List(list::ListArgs),
    /// Show one workspace in detail
    Status(status::StatusArgs),
    /// Show the ports a workspace publishes on the host
    Ports(status::PortsArgs),
    /// Stop a workspace's pod (volumes and the agent's home are kept)
    Stop(lifecycle::StopArgs),
    /// Start a stopped workspace and wait until the agent answers
    Start(lifecycle::StartArgs),
    /// A shell (or a command, after --) in the workspace as its remoteUser
    Ssh(ssh::SshArgs),
    /// Open the agent's terminal interface (runs `oc` in the workspace)
    Attach(ssh::AttachArgs),
    /// Run a command in one of the pod's containers (after --)
    Exec(ssh::ExecArgs),
    /// Write an OpenSSH client entry for a workspace (editors' Remote-SSH, ssh, scp, sftp)
    SshConfig(ssh_config::SshConfigArgs),
    /// Forward a port of the host's 127.0.0.1 to a port inside a running workspace
    Forward(forward::ForwardArgs),
    /// Internal: SSH's server side on stdin/stdout for a workspace (ssh-config's ProxyCommand)
    #[command(hide = true)]
    SshServer(ssh_config::SshServerArgs),
    /// Hand the agent of a running workspace a (follow-up) task
    Task(task::TaskArgs),
    /// Fetch the agent's commits into the host repo as branch devaipod/NAME and show the diff
    Review(review::ReviewArgs),
    /// Let a running workspace's agent reach more names (through its proxy)
    Allow(network::AllowArgs),
    /// Take names off a running workspace's allowlist
    Deny(network::AllowArgs),
    /// Print a container's output
    Logs(logs::LogsArgs),
    /// A repo's images without a pod (pull, build), and the images devaipod pulled or built
    Image(image::ImageArgs),
    /// devcontainer Features: fetch one into the cache (OCI artifact or HTTPS tarball)
    Feature(feature::FeatureArgs),
    /// Remove workspaces' pods, containers and volumes
    Delete(delete::DeleteArgs),
    /// Remove what devaipod made and no longer uses (leftovers, old images and volumes)
    Gc(gc::GcArgs),
    /// Show how devaipod reads the devcontainer.json (like `devcontainer read-configuration`)
    Config(config::ConfigArgs),
    /// Check what `up` needs on this machine (Podman, rootless setup, cgroups, the bundled image) and say how to fix what is missing
    Doctor(doctor::DoctorArgs),
    /// Print shell completions (bash, zsh, fish)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Internal: one request to the agent's server (runs inside the pod's network namespace)
    #[command(name = "__http", hide = true)]
    Http,
    /// Internal: poll an HTTP URL until it answers (runs inside the pod's network namespace)
    #[command(name = "__probe", hide = true)]
    Probe {
        url: String,
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
    },
}

/// Sets up logging on stderr: warnings by default, more with -v or RUST_LOG.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // The HTTP client crates log request and response bodies at debug/trace: a secret's
    // value travels in one. They are held at info whatever RUST_LOG asks.
    let filter = [
        "containers_api",
        "podman_api",
        "hyper",
        "hyperlocal",
        "mio",
        "oci_client",
        "reqwest",
        "rustls",
    ]
    .iter()
    .filter_map(|c| format!("{c}=info").parse().ok())
    .fold(filter, |f, d| f.add_directive(d));
    // rustls-platform-verifier logs a refused certificate at error level; devaipod's
    // own error says which registry and where its CA goes.
    let filter = match "rustls_platform_verifier=off".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

/// Runs the parsed command; the engine it connected to (if any) is shut down on every
/// way out, an error or an interruption included.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut ctx = Context::new();
    let result = dispatch(&ctx, cli.command).await;
    ctx.shutdown();
    // A Ctrl-C reaches devaipod's children too (git, podman's CLI): what failed because
    // one of them died of it was interrupted, and exits as such.
    result.map_err(|e| {
        if crate::podman::cancel::requested() && !is_interrupted(&e) {
            e.context(crate::Interrupted)
        } else {
            e
        }
    })
}

async fn dispatch(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up(args) => up::run(ctx, args).await,
        Command::List(args) => list::run(ctx, args).await,
        Command::Status(args) => status::run(ctx, args).await,
        Command::Ports(args) => status::ports(ctx, args).await,
        Command::Stop(args) => lifecycle::stop(ctx, args).await,
        Command::Start(args) => lifecycle::start(ctx, args).await,
        Command::Logs(args) => logs::run(ctx, args).await,
        Command::Image(args) => image::run(ctx, args).await,
        Command::Feature(args) => feature::run(ctx, args).await,
        Command::Allow(args) => network::change(ctx, args, true).await,
        Command::Deny(args) => network::change(ctx, args, false).await,
        Command::Task(args) => task::run(ctx, args).await,
        Command::Ssh(args) => ssh::ssh(ctx, args).await,
        Command::Attach(args) => ssh::attach(ctx, args).await,
        Command::Exec(args) => ssh::exec(ctx, args).await,
        Command::SshConfig(args) => ssh_config::run(ctx, args).await,
        Command::Forward(args) => forward::run(ctx, args).await,
        Command::SshServer(args) => ssh_config::server(ctx, args).await,
        Command::Review(args) => review::run(ctx, args).await,
        Command::Delete(args) => delete::run(ctx, args).await,
        Command::Gc(args) => gc::run(ctx, args).await,
        Command::Config(args) => config::run(ctx, args).await,
        Command::Doctor(args) => doctor::run(ctx, args).await,
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "devaipod", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Http => {
            crate::podman::agent_http::run_http().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe { url, timeout_ms } => {
            crate::podman::readiness::run_probe(&url, std::time::Duration::from_millis(timeout_ms))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An error as `main` prints it: the whole chain, with any control character in the
/// agent's or the repo's text it quotes (commit subjects, the agent's last log lines,
/// configuration values) escaped for the terminal. Newlines stay: messages span lines.
pub fn error_message(e: &anyhow::Error) -> String {
    crate::terminal::text(&format!("{e:#}")).into_owned()
}

/// Whether `e` is an interruption: made of [`crate::Interrupted`], a context of it (as
/// [`run`] adds to what failed after a Ctrl-C), or caused by one. A context is a link
/// of the chain whose own type is anyhow's wrapper, so the chain alone misses it.
fn is_interrupted(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::Interrupted>().is_some()
        || e.chain().any(|c| c.is::<crate::Interrupted>())
}

/// Exit code for an error: 130 when interrupted, 1 otherwise.
pub fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    if is_interrupted(e) {
        ExitCode::from(130)
    } else {
        ExitCode::FAILURE
    }
}

/// A channel that turns Ctrl-C and SIGTERM into a cancellation request.
pub fn cancel_on_signals() -> crate::podman::cancel::Cancel {
    crate::podman::cancel::on_signals()
}

#[cfg(test)]
mod tests {
    use super::is_interrupted;

    #[test]
    fn an_interruption_is_found_however_it_is_wrapped() {
        // As `run` marks what failed after a Ctrl-C (a readiness wait cut short, a
        // child killed by the terminal's signal): the context, over another error.
        let after = anyhow::anyhow!("the agent did not answer").context(crate::Interrupted);
        assert!(is_interrupted(&after));
        let deeper = after.context("rolling back");
        assert!(is_interrupted(&deeper));
        let made = anyhow::Error::new(crate::Interrupted).context("pulling");
        assert!(is_interrupted(&made));
        assert!(!is_interrupted(&anyhow::anyhow!("interrupted")));
        assert!(!is_interrupted(
            &anyhow::anyhow!("x").context("interrupted: no")
        ));
    }
}
