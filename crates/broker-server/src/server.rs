//! [`Server`]: open the database, bind, serve, and shut down in order.

use std::future::Future;
use std::net::SocketAddr;

use broker_core::Broker;
use broker_http::App;
use broker_storage_redb::RedbStorage;
use tokio::net::TcpListener;

use crate::{Config, Error};

/// A server with its database open and its address bound, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    app: App,
    config: Config,
}

impl Server {
    /// Opens the database and the engine, and binds the listening address.
    pub async fn bind(config: Config) -> Result<Server, Error> {
        let storage = RedbStorage::open(&config.data)
            .await
            .map_err(|source| Error::Storage { path: config.data.clone(), source })?;
        let broker = Broker::open(storage, config.engine.clone()).await?;
        let listener = match TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(source) => {
                // Release the database before reporting, so that a retry can open it.
                broker.close().await?;
                return Err(Error::Bind { addr: config.listen, source });
            }
        };
        Ok(Server { listener, app: App::new(broker, config.http.clone()), config })
    }

    /// The address the server listens on; with port 0, the port the system picked.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The engine, for programs that also insert or subscribe from Rust.
    pub fn broker(&self) -> &Broker {
        self.app.broker()
    }

    /// Serves until `shutdown` completes, then stops accepting, ends the event streams, waits
    /// for requests in flight, commits every queued insert and closes the database.
    ///
    /// Connections get the configured shutdown deadline to finish; the engine and database get
    /// the same again to commit what was queued.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let Server { listener, app, config } = self;
        tracing::info!(addr = %config.listen, data = %config.data.display(), "serving");
        broker_http::serve(listener, app.clone(), shutdown).await;
        let deadline = config.http.shutdown_timeout;
        match tokio::time::timeout(deadline, app.broker().close()).await {
            Ok(result) => result?,
            Err(_) => return Err(Error::ShutdownTimeout(deadline)),
        }
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
