//! The live demo page (`broker-server --demo`) in a real browser: headless Chromium from
//! Debian's `chromium` package, driven through `chromedriver` over WebDriver.
//!
//! Two windows share a form: typing in one shows in the other; a reload comes back in the latest
//! state without any request but `/events`; a restart of the server is survived by itself; the
//! timeline shows the form as it was at any version. A screenshot of each window is kept in the
//! test's output directory.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::{Pki, Server};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the page may take to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(15);

/// A `chromedriver` process on a free loopback port, killed on drop.
struct Driver {
    _child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        for program in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: install Debian's chromium and chromium-driver packages \
                 (`apt-get install chromium chromium-driver`; .ci/run does this)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        let ready = async {
            loop {
                if let Ok(response) = reqwest::get(&status).await {
                    let body: Value = response.json().await.unwrap_or_default();
                    if body["value"]["ready"] == json!(true) {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(PATIENCE, ready).await.expect("chromedriver becomes ready");
        Driver { _child: child, url }
    }

    /// A new browser window with a profile of its own.
    async fn window(&self) -> Client {
        self.window_with(&[]).await
    }

    /// A new browser window with a profile of its own, started with `flags` besides the usual.
    async fn window_with(&self, flags: &[&str]) -> Client {
        // The flags this machine's closed network needs, besides headless.
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,800",
        ];
        args.extend_from_slice(flags);
        let capabilities = serde_json::from_value(json!({
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
        }))
        .expect("capabilities are a JSON object");
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("open a Chromium window")
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Polls `probe` until it returns `Some`, failing after [`PATIENCE`] with `what`.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn field(window: &Client, id: &str) -> String {
    let element = window.find(Locator::Id(id)).await.expect("the field exists");
    element.prop("value").await.expect("read the value").unwrap_or_default()
}

async fn status(window: &Client) -> String {
    let element = window.find(Locator::Id("status")).await.expect("the status exists");
    element.attr("data-state").await.expect("read the state").unwrap_or_default()
}

async fn wait_for_field(window: &Client, id: &str, expected: &str) {
    eventually(&format!("#{id} to show {expected:?}"), || async {
        (field(window, id).await == expected).then_some(())
    })
    .await;
}

async fn wait_until_live(window: &Client) {
    eventually("the page to be live", || async { (status(window).await == "live").then_some(()) })
        .await;
}

async fn type_into(window: &Client, id: &str, text: &str) {
    let element = window.find(Locator::Id(id)).await.expect("the field exists");
    element.send_keys(text).await.expect("type");
}

/// Saves a screenshot of `window` in the test's output directory and returns its path.
async fn screenshot(window: &Client, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    let path = dir.join(format!("{name}.png"));
    let png = window.screenshot().await.expect("take a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    std::fs::write(&path, png).expect("save the screenshot");
    eprintln!("screenshot: {}", path.display());
    path
}

/// The paths of every subresource the page requested since it loaded.
async fn requested_paths(window: &Client) -> Vec<String> {
    let script =
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)";
    let paths = window.execute(script, Vec::new()).await.expect("read resource timings");
    serde_json::from_value(paths).expect("a list of paths")
}

/// How many requests each route has answered, from the server's `/metrics`.
async fn requests_by_route(server: &Server) -> std::collections::BTreeMap<String, u64> {
    let metrics = server.metrics().await;
    let mut counts = std::collections::BTreeMap::new();
    for line in metrics.lines("broker_http_requests_total{") {
        let route = line.split("route=\"").nth(1).and_then(|rest| rest.split('"').next());
        let count = line.rsplit(' ').next().and_then(|count| count.parse::<u64>().ok());
        if let (Some(route), Some(count)) = (route, count) {
            *counts.entry(route.to_owned()).or_default() += count;
        }
    }
    counts
}

#[tokio::test]
async fn demo_page_shares_a_form_between_windows_and_survives_reload_and_restart() {
    let port = free_port().to_string();
    let args = ["--demo", "--port", &port, "--retry", "300ms", "--heartbeat", "1s"];
    let mut server = Server::start_with(&args, &[]).await;
    let driver = Driver::start().await;
    let (first, second) = (driver.window().await, driver.window().await);
    for window in [&first, &second] {
        window.goto(&server.url("/")).await.expect("open the demo page");
        wait_until_live(window).await;
    }

    // Type in one window; the other follows.
    type_into(&first, "name", "Rusty").await;
    type_into(&first, "message", "Hello from the first window").await;
    wait_for_field(&second, "name", "Rusty").await;
    wait_for_field(&second, "message", "Hello from the first window").await;
    type_into(&second, "email", "rusty@example.com").await;
    wait_for_field(&first, "email", "rusty@example.com").await;
    assert_eq!(field(&first, "name").await, "Rusty", "the second window's edit kept the name");

    // Reload: the latest state comes back from the snapshot, with no request but /events.
    let before = requests_by_route(&server).await;
    second.refresh().await.expect("reload");
    wait_until_live(&second).await;
    wait_for_field(&second, "name", "Rusty").await;
    wait_for_field(&second, "email", "rusty@example.com").await;
    let after = requests_by_route(&server).await;
    let asked: Vec<(&str, u64)> = after
        .iter()
        .map(|(route, count)| (route.as_str(), count - before.get(route).copied().unwrap_or(0)))
        // The test's own /metrics reads and a browser's favicon probe (no route) are not the page's.
        .filter(|(route, new)| *new > 0 && !["metrics", "none"].contains(route))
        .collect();
    assert_eq!(asked, [("demo", 1), ("events", 1)], "a reload asks for the page and /events only");
    // An event stream never completes, so it has no resource timing; any other request would.
    let paths = requested_paths(&second).await;
    assert!(paths.iter().all(|path| path == "/events"), "the page requested {paths:?}");

    // Restart the server: both pages reconnect by themselves and catch up on what they missed.
    server.restart().await;
    let data = json!({ "name": "Ferris", "email": "ferris@example.com", "message": "after restart", "by": "test" });
    server.insert("form", data).await;
    for window in [&first, &second] {
        wait_for_field(window, "name", "Ferris").await;
        wait_for_field(window, "message", "after restart").await;
        wait_until_live(window).await;
    }

    // The timeline: the first position shows the form as its first version left it, the last
    // as it is now, each asked of /snapshot?at= by the page. The slider is moved with the keys a
    // user would press.
    let history = server.audit("form").await;
    let first_name = history[0].data()["name"].as_str().unwrap_or_default().to_owned();
    first.find(Locator::Id("timeline-load")).await.expect("button").click().await.expect("click");
    eventually("the timeline to load", || async {
        let at = first.find(Locator::Id("past-at")).await.ok()?;
        let id = at.attr("data-id").await.ok()??;
        (id == history.last()?.id.to_string()).then_some(())
    })
    .await;
    wait_for_field(&first, "past-name", "Ferris").await;
    let slider = first.find(Locator::Id("timeline")).await.expect("the slider");
    slider.send_keys("\u{E011}").await.expect("press Home"); // WebDriver's Home key.
    wait_for_field(&first, "past-name", &first_name).await;
    wait_for_field(&first, "past-email", "").await;
    let at = first.find(Locator::Id("past-at")).await.expect("the label");
    let at = at.attr("data-id").await.expect("read the id").unwrap_or_default();
    assert_eq!(at, history[0].id.to_string(), "the first position is the first version");
    slider.send_keys("\u{E010}").await.expect("press End"); // WebDriver's End key.
    wait_for_field(&first, "past-message", "after restart").await;
    assert!(
        requests_by_route(&server).await.get("snapshot").copied().unwrap_or(0) >= 3,
        "each position was asked of /snapshot"
    );

    // The audit view lists every version of the form, oldest first.
    first.find(Locator::Id("audit-load")).await.expect("button").click().await.expect("click");
    let rows = eventually("the audit table to fill", || async {
        let rows = first.find_all(Locator::Css("#audit tr")).await.ok()?;
        (!rows.is_empty()).then_some(rows.len())
    })
    .await;
    assert!(rows >= 3, "one row per version inserted by the windows and the test: {rows}");

    screenshot(&first, "demo-first-window").await;
    screenshot(&second, "demo-second-window").await;
    first.close().await.expect("close the first window");
    second.close().await.expect("close the second window");
}

/// Writes a certificate for 127.0.0.1, signed by `pki`, and its key into `dir`; returns their
/// paths.
fn certificate(pki: &Pki, dir: &std::path::Path) -> (String, String) {
    let leaf = pki.leaf("broker browser test");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &leaf.chain).expect("write the certificate");
    std::fs::write(&key, &leaf.key).expect("write the key");
    (cert.display().to_string(), key.display().to_string())
}

/// Opens `count` more `EventSource`s on `/events?event=<event>` in the page, each counting the
/// versions of `event` it receives into `window.h2test[i]`.
async fn open_event_sources(window: &Client, event: &str, count: usize) {
    let script = r#"
        const [event, count] = arguments;
        window.h2test = [];
        window.h2sources = [];
        for (let i = 0; i < count; i++) {
            window.h2test.push(0);
            const source = new EventSource(`/events?event=${event}`);
            source.addEventListener(event, () => { window.h2test[i] += 1; });
            window.h2sources.push(source);
        }
    "#;
    window.execute(script, vec![json!(event), json!(count)]).await.expect("open the sources");
}

/// How many of the page's extra `EventSource`s received a version, and how many are open.
async fn event_sources(window: &Client) -> (usize, usize) {
    let script = "return [window.h2test.filter(n => n > 0).length, \
                  window.h2sources.filter(s => s.readyState === 1).length]";
    let counts = window.execute(script, Vec::new()).await.expect("count the sources");
    serde_json::from_value::<(usize, usize)>(counts).expect("two counts")
}

#[tokio::test]
async fn over_https_and_http2_ten_event_streams_share_one_origin_and_over_http1_the_seventh_waits()
{
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pki = Pki::new();
    let (cert, key) = certificate(&pki, dir.path());
    let port = free_port().to_string();
    let tls = ["--demo", "--port", &port, "--tls-cert", &cert, "--tls-key", &key];
    let secure = Server::start_with(&tls, &[]).await;
    let driver = Driver::start().await;
    // The test's own authority is trusted by skipping the check, in this browser only.
    let window = driver.window_with(&["--ignore-certificate-errors"]).await;
    let origin = format!("https://127.0.0.1:{port}");
    window.goto(&format!("{origin}/")).await.expect("open the demo page over https");
    wait_until_live(&window).await;
    let protocol = window
        .execute("return performance.getEntriesByType('navigation')[0].nextHopProtocol", vec![])
        .await
        .expect("read the protocol");
    assert_eq!(protocol, json!("h2"), "the page came over HTTP/2");

    open_event_sources(&window, "h2test", 10).await;
    eventually("the 10 event streams to open", || async {
        (event_sources(&window).await.1 == 10).then_some(())
    })
    .await;
    let insert = pki.client(&secure).insert("h2test", json!("live")).await;
    assert_eq!(insert.status, 201, "insert over https");
    eventually("every one of the 10 streams to receive the insert", || async {
        (event_sources(&window).await.0 == 10).then_some(())
    })
    .await;
    screenshot(&window, "demo-https-h2").await;
    window.close().await.expect("close the window");

    // The same page over plain HTTP/1.1: six connections per origin, one of them the demo's own
    // stream, so of ten more streams five open and the rest wait.
    let plain = Server::start_with(&["--demo"], &[]).await;
    let window = driver.window().await;
    window.goto(&plain.url("/")).await.expect("open the demo page over http");
    wait_until_live(&window).await;
    open_event_sources(&window, "h2test", 10).await;
    eventually("the first streams to open", || async {
        (event_sources(&window).await.1 >= 5).then_some(())
    })
    .await;
    plain.insert("h2test", json!("live")).await;
    eventually("the open streams to receive the insert", || async {
        (event_sources(&window).await.0 >= 5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (received, open) = event_sources(&window).await;
    assert!(
        open <= 5 && received <= 5,
        "over HTTP/1.1 only 5 of 10 more streams open: {open}, {received}"
    );
    screenshot(&window, "demo-http1-seventh-waits").await;
    window.close().await.expect("close the window");
}
