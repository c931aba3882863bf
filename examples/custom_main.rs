//! Starting the server from a program's own `main`, with a configuration built in code and a
//! shutdown of the program's choosing.
//!
//! Run it with `cargo run -p broker-examples --example custom_main`. It serves on a free port of
//! 127.0.0.1, makes one insert over HTTP, and shuts itself down.

use std::time::Duration;

use broker_server::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::new(dir.path().join("broker.redb"));
    config.listen = "127.0.0.1:0".parse()?;
    config.http.heartbeat = Duration::from_secs(5);
    config.http.max_body = 64 * 1024;

    let server = Server::bind(config).await?;
    let addr = server.local_addr();
    println!("serving on http://{addr}");

    // Shut down on our own signal rather than SIGINT/SIGTERM.
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let body = r#"{"event":"greeting","data":"hello"}"#;
    let request = format!(
        "POST /insert HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    println!("{}", response.lines().next().unwrap_or_default());
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    let _ = stop.send(());
    running.await??;
    println!("shut down");
    Ok(())
}
