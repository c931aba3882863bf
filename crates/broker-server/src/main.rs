//! `broker-server`: parse the configuration, set up logging, start the runtime with `--threads`
//! workers, and run until SIGINT or SIGTERM, or run one of the subcommands.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use broker_server::{Args, Command, Error, LogFormat, Server, shutdown_signal};
use broker_storage::StorageError;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    quiet_redb_panics();
    let format = args.log_format;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads())
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(error) => Err(anyhow::Error::new(error).context("cannot start the runtime")),
    };
    match result {
        Ok(status) => status,
        Err(error) => {
            // One line, each cause once: as a log record for collectors, as plain text for people.
            match format {
                LogFormat::Json => tracing::error!("{error:#}"),
                LogFormat::Text => eprintln!("broker-server: {error:#}"),
            }
            ExitCode::from(exit_status(&error))
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.nats.is_set() && matches!(args.command, Some(Command::Check(_) | Command::Backup(_))) {
        anyhow::bail!(
            "check and backup work on a redb database file, and --nats keeps the database in a \
             NATS stream: check and back up the stream with the NATS tools (nats stream info, \
             nats stream backup)"
        );
    }
    match &args.command {
        Some(Command::Token(token)) => {
            println!("{}", token.mint()?);
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Check(check)) => {
            let verdict = check.run(args.data.clone()).await;
            if verdict.checked() {
                println!("{verdict}");
            } else {
                eprintln!("broker-server: {verdict}");
            }
            return Ok(ExitCode::from(verdict.exit_status()));
        }
        Some(Command::Backup(backup)) => {
            println!("{}", backup.run().await?);
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let config = args.into_config()?;
    let server = Server::bind(config).await.context("cannot start")?;
    // Before the announcement: a SIGTERM sent as soon as the address is read stops the server
    // cleanly.
    let shutdown = shutdown_signal();
    // The one line on standard output: scripts and tests read the address from it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "broker-server listening on {}://{}", server.scheme(), server.local_addr())?;
    stdout.flush()?;
    drop(stdout);
    server.run(shutdown).await.context("shutdown failed")?;
    Ok(ExitCode::SUCCESS)
}

/// The exit status of a failure: 2 when the database is damaged or unusable, so that a
/// supervisor can tell "restore a backup" from "fix the configuration" (1).
fn exit_status(error: &anyhow::Error) -> u8 {
    let damaged = error.chain().any(|cause| {
        let storage = cause
            .downcast_ref::<StorageError>()
            .or_else(|| cause.downcast_ref::<Error>().and_then(Error::storage));
        matches!(storage, Some(StorageError::Corrupt(_)))
    });
    if damaged { 2 } else { 1 }
}

/// Keeps redb's panics off standard error, and every other panic on it.
///
/// redb panics on some damaged pages rather than returning an error. The storage catches those
/// panics on its blocking threads and reports the file as damaged, in one line; but the default
/// hook would first print each panic, with a hint about backtraces, as if the broker had
/// crashed. So a panic raised in redb's own code is logged at debug level only. Every other
/// panic, the broker's own among them, goes to the default hook as before: the rule looks only
/// at where the panic was raised, and redb's source lives in a directory named `redb-<version>`.
fn quiet_redb_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_redb = info.location().is_some_and(|location| {
            let file = location.file();
            file.contains("/redb-") || file.starts_with("redb-")
        });
        if in_redb {
            tracing::debug!(
                location = %info.location().map(ToString::to_string).unwrap_or_default(),
                panic = panic_message(info.payload()),
                "redb panicked on damaged data; the storage reports it as damaged"
            );
        } else {
            default(info);
        }
    }));
}

/// The message a panic was raised with, when it was a string.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    match payload.downcast_ref::<&str>() {
        Some(message) => message,
        None => payload.downcast_ref::<String>().map_or("", String::as_str),
    }
}
