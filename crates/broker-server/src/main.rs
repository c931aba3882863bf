//! `broker-server`: parse the configuration, set up logging, run until SIGINT or SIGTERM, or run
//! one of the subcommands.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use broker_server::{Args, Command, LogFormat, Server, shutdown_signal};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
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
    let format = args.log_format;
    match run(args).await {
        Ok(status) => status,
        Err(error) => {
            // One line, each cause once: as a log record for collectors, as plain text for people.
            match format {
                LogFormat::Json => tracing::error!("{error:#}"),
                LogFormat::Text => eprintln!("broker-server: {error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
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
    // The one line on standard output: scripts and tests read the address from it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "broker-server listening on http://{}", server.local_addr())?;
    stdout.flush()?;
    drop(stdout);
    server.run(shutdown_signal()).await.context("shutdown failed")?;
    Ok(ExitCode::SUCCESS)
}
