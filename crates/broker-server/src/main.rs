//! `broker-server`: parse the configuration, set up logging, run until SIGINT or SIGTERM.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use broker_server::{Args, Command, LogFormat, Server, shutdown_signal};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line, each cause once: as a log record for collectors, as plain text for people.
            match format {
                LogFormat::Json => tracing::error!("{error:#}"),
                LogFormat::Text => eprintln!("broker-server: {error:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Command::Token(token)) = &args.command {
        println!("{}", token.mint()?);
        return Ok(());
    }
    let config = args.into_config()?;
    let server = Server::bind(config).await.context("cannot start")?;
    // The one line on standard output: scripts and tests read the address from it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "broker-server listening on http://{}", server.local_addr())?;
    stdout.flush()?;
    drop(stdout);
    server.run(shutdown_signal()).await.context("shutdown failed")?;
    Ok(())
}
