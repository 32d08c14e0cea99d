//! The `devaipod` binary: parse arguments, set up logging and the runtime, run the
//! library, print the error chain (escaped for the terminal) and exit non-zero on failure.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = devaipod::cli::Cli::parse();
    devaipod::cli::init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `block_on` runs the command on this (the main) thread, which lives as long as the
    // process: the private podman service is spawned from here so that its parent-death
    // signal fires only when devaipod itself exits.
    let result = runtime.block_on(devaipod::cli::run(cli));
    // Drop the runtime (and with it any engine connections) before printing/exiting.
    drop(runtime);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", devaipod::cli::error_message(&e));
            devaipod::cli::exit_code_for(&e)
        }
    }
}
