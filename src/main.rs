//! The `copilot` command: parse arguments, load the configuration, run the server.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use copilot::{
    AppState,
    config::{Backend, Config},
};
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
    /// Write a checked copy of the live database to PATH while the server keeps serving
    Backup {
        /// Where the copy goes (must not exist)
        path: PathBuf,
    },
    /// Put the backup at PATH in place of the database (refused while a server uses it; the
    /// replaced database is kept beside it as <db>.before-restore-<time>)
    Restore {
        /// A file written by `copilot backup`
        path: PathBuf,
    },
    /// Apply the migrations that the database lacks, then exit: the SQLite file of
    /// database.path, or the PostgreSQL database of database.url
    Migrate,
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
    let db = config.database.path.clone();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Backend::Postgres(url) = config.database.backend() {
        match command {
            Command::Migrate => return migrate_postgres(url, config.database.pool_size),
            // any number of instances may serve one PostgreSQL database: no file lock
            Command::Serve => return serve(config),
            Command::Backup { .. } | Command::Restore { .. } => {
                eprintln!(
                    "error: backup and restore copy the SQLite file of database.path; a PostgreSQL database \
                     (database.url) is backed up with PostgreSQL's own tools (pg_dump, pg_basebackup)"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    match command {
        Command::Migrate => {
            // a server running on the file has migrated it already, to its own version
            let _lock = match copilot::backup::DbLock::acquire(&db, "copilot migrate") {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let busy = std::time::Duration::from_millis(config.database.busy_timeout_ms);
            match copilot::db::migrate_file(&db, busy) {
                Ok((before, after)) => {
                    let after = after.unwrap_or_default();
                    match before {
                        Some(v) if v == after => println!("{}: up to date, schema version {after}.", db.display()),
                        Some(v) => println!("{}: migrated from schema version {v} to {after}.", db.display()),
                        None => println!("{}: created, schema version {after}.", db.display()),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backup { path } => match copilot::backup::backup(&db, &path) {
            Ok(r) => {
                println!(
                    "Backed up {} to {} ({:.1} MB in {:.2} s); integrity_check: ok.",
                    db.display(),
                    path.display(),
                    r.bytes as f64 / 1e6,
                    r.elapsed.as_secs_f64()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Restore { path } => match copilot::backup::restore(&db, &path) {
            Ok(r) => {
                println!(
                    "Restored {} from {} ({:.1} MB in {:.2} s).",
                    db.display(),
                    path.display(),
                    r.bytes as f64 / 1e6,
                    r.elapsed.as_secs_f64()
                );
                if let Some(kept) = r.kept {
                    println!("The database it replaced is kept as {}.", kept.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => {
            // one server per database file: a second one (or a restore) is refused
            let _lock = match copilot::backup::DbLock::acquire(&db, "copilot serve") {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            serve(config)
        }
    }
}

/// Serves until a stop signal. `AppState::open` runs before the runtime starts: it connects to
/// PostgreSQL with the synchronous client, which cannot run inside the runtime.
fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = AppState::open(config).and_then(|(state, startup)| runtime.block_on(copilot::serve(state, startup)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `copilot migrate` on `database.url`.
fn migrate_postgres(url: &str, pool_size: u32) -> ExitCode {
    let what = copilot::pg::describe(url);
    match copilot::pg::open(url, pool_size.min(2)).and_then(|pool| copilot::pg::migrate(&pool)) {
        Ok(m) => {
            let version = m.version.unwrap_or_default();
            if m.applied.is_empty() {
                println!("{what}: up to date, schema version {version}.");
            } else {
                let names: Vec<String> = m.applied.iter().map(|(v, n)| format!("V{v}__{n}")).collect();
                println!("{what}: applied {} ({}), schema version {version}.", names.len(), names.join(", "));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    // refinery logs a line per migration it applies (a dozen on a first start); copilot logs one
    // for all of them, so refinery's own lines are left to filters that name it (or RUST_LOG)
    let level = &config.log.level;
    let configured = if level.contains("refinery") { level.clone() } else { format!("{level},refinery_core=warn") };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&configured))
        .unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
