//! The `copilot` command: parse arguments, load the configuration, run the server.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use copilot::{AppState, config::Config};
use tracing_subscriber::EnvFilter;

/// copilot — the self-hosted enterprise AI co-pilot backend.
///
/// Serves the REST API under /api/v1, its docs at /docs and the admin console at /admin/,
/// storing everything in one SQLite file.
#[derive(Parser)]
#[command(name = "copilot", version, about, long_about)]
struct Cli {
    /// Configuration file [default: ./copilot.toml; every key can be overridden by
    /// COPILOT_<SECTION>__<KEY> environment variables]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default when no command is given)
    Serve,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result =
                AppState::open(config).and_then(|(state, startup)| runtime.block_on(copilot::serve(state, startup)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
