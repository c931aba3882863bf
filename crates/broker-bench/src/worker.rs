//! A load-generator process: subscribers and publishers on one thread, driven by the coordinator.
//!
//! The coordinator starts each worker as `broker-bench worker CONFIG_JSON` and talks to it over
//! pipes. Standard input takes commands, one per line: `start` (publishers begin), `stop`
//! (publishers stop and finish the request in flight), `finish` (send the final report and
//! exit). Standard output carries [`Report`]s as JSON lines: progress four times a second, then
//! the final report. A worker holds at most a few thousand connections, well under the limit of
//! open files of a process, so that a large run spreads over several workers.
//!
//! Everything runs on one thread (a `LocalSet`): the state is shared through `Rc<RefCell<_>>`,
//! with no locks and no atomics on the path of a delivery.

use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::h2c::connect_h2;
use crate::hist::Histogram;
use crate::progress::{Final, Progress, Report};
use crate::reader::{EventStream, SseReader};
use crate::target::{Target, subscribe_request};
use crate::{client, payload};

/// What one worker does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WorkerConfig {
    /// The server's nodes (one for most targets): subscribers take them in turn.
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) target: Target,
    /// The loopback address this worker's connections come from.
    pub(crate) source: Ipv4Addr,
    /// How many subscribers to open, all on `subscribe_path`.
    pub(crate) subscribers: usize,
    /// The run-wide number of this worker's first subscriber, so that the nodes are taken in
    /// turn across workers.
    pub(crate) first_subscriber: usize,
    pub(crate) subscribe_path: String,
    /// How many subscribers may be connecting at once (connected but not yet registered).
    pub(crate) connect_parallel: usize,
    /// A subscriber counts as registered once its response head arrives, rather than when it
    /// receives the warm-up version: for a server that sends no stored version to a new
    /// subscriber (nchan with `nchan_subscriber_first_message newest`).
    pub(crate) ready_on_head: bool,
    /// The highest publisher id of the whole run; subscribers track each one's sequence.
    pub(crate) publisher_ids: u32,
    pub(crate) publishers: Option<PublisherPlan>,
    /// Subscribers open their streams over this many HTTP/2 connections (h2c), taken in turn;
    /// 0 for a connection of HTTP/1.1 each.
    #[serde(default)]
    pub(crate) h2_connections: usize,
}

impl WorkerConfig {
    /// The node subscriber `index` of this worker connects to: the nodes in turn.
    pub(crate) fn subscriber_addr(&self, index: usize) -> SocketAddr {
        self.addrs[(self.first_subscriber + index) % self.addrs.len()]
    }
}

/// The publishers of one worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PublisherPlan {
    /// The nodes publishers send to, each publisher to one, taken in turn by id.
    pub(crate) addrs: Vec<SocketAddr>,
    /// Ids `first_id..first_id + count`; ids start at 1 (0 is the warm-up).
    pub(crate) first_id: u32,
    pub(crate) count: u32,
    /// Publishes per second of each publisher; `None` for as fast as acknowledgements come.
    pub(crate) rate: Option<f64>,
    /// Payload size in bytes.
    pub(crate) payload: usize,
    pub(crate) events: Events,
    /// Versions per request: each publish is an array of this many versions of the event (with
    /// [`Events::One`]), stored in one commit; `None` for one version per request, as an object.
    pub(crate) bulk: Option<usize>,
}

impl PublisherPlan {
    /// The node publisher `id` sends to: the nodes in turn, by id.
    pub(crate) fn addr(&self, id: u32) -> SocketAddr {
        self.addrs[id as usize % self.addrs.len()]
    }
}

/// Which events publishers write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Events {
    /// Every publish is a new version of this event.
    One(String),
    /// Events `{prefix}00000` to `{prefix}{total - 1}`, one version each, shared out among
    /// `stride` publishers by id; a publisher stops when its share is done.
    Distinct { prefix: String, total: u64, stride: u32 },
}

#[derive(Default)]
struct State {
    progress: Progress,
    delivery: Histogram,
    insert: Histogram,
    acked: Vec<(u32, u64)>,
}

impl State {
    fn note_error(&mut self, error: impl std::fmt::Display) {
        if self.progress.first_error.is_none() {
            self.progress.first_error = Some(error.to_string());
        }
    }
}

type Shared = Rc<RefCell<State>>;

/// Runs a worker until the coordinator says `finish` or closes its standard input.
pub(crate) fn main(config: &str) -> anyhow::Result<()> {
    let config: WorkerConfig = serde_json::from_str(config)?;
    crate::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(config));
    // The connections close with the process; no need to drop ten thousand tasks one by one.
    std::process::exit(0)
}

async fn run(config: WorkerConfig) {
    let config = Rc::new(config);
    let state = Shared::default();
    let request: Rc<[u8]> = subscribe_request(&config.subscribe_path).into();
    // At most this many subscribers are between connect and registration, so that a burst
    // of thousands does not overflow the server's accept queue.
    let gate = Rc::new(Semaphore::new(config.connect_parallel.max(1)));
    let mut h2 = Vec::new();
    for index in 0..config.h2_connections.min(config.subscribers) {
        let addr = config.subscriber_addr(index);
        match connect_h2(addr, config.source).await {
            Ok(send) => h2.push(send),
            Err(error) => state.borrow_mut().note_error(format!("h2 connection: {error:#}")),
        }
    }
    if config.h2_connections > 0 && h2.is_empty() {
        state.borrow_mut().progress.failed += config.subscribers as u64;
    }
    for index in 0..config.subscribers {
        let addr = config.subscriber_addr(index);
        let via = match h2.len() {
            0 if config.h2_connections > 0 => break,
            0 => Via::H1(request.clone()),
            n => Via::H2(h2[index % n].clone()),
        };
        let task = subscriber(config.clone(), addr, via, state.clone(), gate.clone());
        tokio::task::spawn_local(task);
    }
    tokio::task::spawn_local(report_progress(state.clone()));

    let stop = Rc::new(Cell::new(false));
    let mut publishers: Vec<JoinHandle<()>> = Vec::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "start" => {
                if let Some(plan) = &config.publishers {
                    let start = tokio::time::Instant::now();
                    for index in 0..plan.count {
                        let task =
                            publisher(config.clone(), index, start, state.clone(), stop.clone());
                        publishers.push(tokio::task::spawn_local(task));
                    }
                }
            }
            "stop" => {
                stop.set(true);
                for publisher in publishers.drain(..) {
                    let _ = publisher.await;
                }
                send(&Report::Progress(state.borrow().progress.clone()));
            }
            "finish" => break,
            _ => {}
        }
    }
    let state = state.borrow();
    send(&Report::Final(Box::new(Final {
        progress: state.progress.clone(),
        delivery: state.delivery.to_sparse(),
        insert: state.insert.to_sparse(),
        acked: state.acked.clone(),
    })));
}

fn send(report: &Report) {
    let mut stdout = std::io::stdout().lock();
    // The coordinator gone means the run is over; nothing to do about a failed write.
    let _ = serde_json::to_writer(&mut stdout, report);
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
}

async fn report_progress(state: Shared) {
    let mut ticks = tokio::time::interval(Duration::from_millis(250));
    loop {
        ticks.tick().await;
        send(&Report::Progress(state.borrow().progress.clone()));
    }
}

/// How a subscriber reaches the server.
enum Via {
    /// A connection of its own, with this request.
    H1(Rc<[u8]>),
    /// A stream of this HTTP/2 connection.
    H2(h2::client::SendRequest<bytes::Bytes>),
}

/// One subscriber: connect to `addr`, wait for the warm-up version, then count every version
/// received.
async fn subscriber(
    config: Rc<WorkerConfig>,
    addr: SocketAddr,
    via: Via,
    state: Shared,
    gate: Rc<Semaphore>,
) {
    // The semaphore is never closed.
    let mut permit = gate.acquire().await.ok();
    let opened = match via {
        Via::H1(request) => {
            SseReader::open(addr, config.source, &request).await.map(EventStream::H1)
        }
        Via::H2(send) => crate::h2c::H2Reader::open(send, addr, &config.subscribe_path)
            .await
            .map(EventStream::H2),
    };
    let mut reader = match opened {
        Ok(reader) => reader,
        Err(error) => {
            let mut state = state.borrow_mut();
            state.progress.failed += 1;
            state.note_error(format!("subscribe: {error:#}"));
            return;
        }
    };
    // The last sequence number received from each publisher, by id.
    let mut last = vec![0u64; config.publisher_ids as usize + 1];
    let mut connected = false;
    let mut ready = false;
    loop {
        let read = reader
            .read(|data, now| {
                let mut state = state.borrow_mut();
                let Some(stamp) = payload::parse(data) else {
                    state.progress.others += 1;
                    return;
                };
                if stamp.publisher == payload::WARMUP {
                    if !ready {
                        ready = true;
                        state.progress.ready += 1;
                        permit = None;
                    }
                    return;
                }
                let Some(last) = last.get_mut(stamp.publisher as usize) else {
                    state.progress.others += 1;
                    return;
                };
                if stamp.seq <= *last {
                    state.progress.duplicates += 1;
                    return;
                }
                state.progress.gaps += stamp.seq - *last - 1;
                *last = stamp.seq;
                let progress = &mut state.progress;
                progress.unique += 1;
                progress.last_delivery_ns = progress.last_delivery_ns.max(now);
                state.delivery.record(now.saturating_sub(stamp.sent_ns));
            })
            .await;
        if !connected && reader.started() {
            connected = true;
            let mut state = state.borrow_mut();
            state.progress.connected += 1;
            if config.ready_on_head && !ready {
                ready = true;
                state.progress.ready += 1;
                permit = None;
            }
        }
        match read {
            Ok(true) => {}
            Ok(false) => {
                state.borrow_mut().progress.closed += 1;
                break;
            }
            Err(error) => {
                let mut state = state.borrow_mut();
                if connected {
                    state.progress.closed += 1
                } else {
                    state.progress.failed += 1
                }
                state.note_error(format!("subscriber: {error:#}"));
                break;
            }
        }
    }
    drop(permit);
}

/// One publisher: publish on schedule (or flat out) until told to stop or its share is done.
async fn publisher(
    config: Rc<WorkerConfig>,
    index: u32,
    start: tokio::time::Instant,
    state: Shared,
    stop: Rc<Cell<bool>>,
) {
    let Some(plan) = &config.publishers else { return };
    let id = plan.first_id + index;
    state.borrow_mut().progress.publishing += 1;
    let mut client = client::Client::new(plan.addr(id), config.source);
    // Publishers of a worker spread their sends evenly over each interval instead of bursting.
    let interval = plan.rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
    let offset =
        interval.map(|interval| interval.mul_f64(f64::from(index) / f64::from(plan.count)));
    let (mut payload, mut request) = (Vec::new(), Vec::new());
    // The payloads of one array, reused from request to request.
    let mut payloads: Vec<Vec<u8>> = vec![Vec::new(); plan.bulk.unwrap_or(0)];
    // Versions per request; `seq` counts versions, so subscribers check arrays as they check
    // single publishes: every version once, in order.
    let versions = payloads.len().max(1) as u64;
    let mut seq: u64 = 0;
    while !stop.get() {
        let event = match &plan.events {
            Events::One(name) => name.clone(),
            Events::Distinct { prefix, total, stride } => {
                let k = u64::from(id - 1) + seq * u64::from(*stride);
                if k >= *total {
                    break;
                }
                format!("{prefix}{k:05}")
            }
        };
        if let (Some(interval), Some(offset)) = (interval, offset) {
            // The rate is of requests: an array counts once.
            let due = start + offset + interval.mul_f64((seq / versions) as f64);
            tokio::time::sleep_until(due).await;
        }
        let sent = crate::clock::now_ns();
        request.clear();
        if payloads.is_empty() {
            payload.clear();
            let stamp = payload::Stamp { publisher: id, seq: seq + 1, sent_ns: sent };
            payload::build(&mut payload, stamp, plan.payload);
            config.target.publish_request(&event, &payload, &mut request);
        } else {
            for (n, payload) in (1..).zip(&mut payloads) {
                payload.clear();
                let stamp = payload::Stamp { publisher: id, seq: seq + n, sent_ns: sent };
                payload::build(payload, stamp, plan.payload);
            }
            config.target.publish_array_request(&event, &payloads, &mut request);
        }
        let outcome = client.request(&request).await;
        let failed = {
            let mut state = state.borrow_mut();
            match outcome {
                Ok(status) if config.target.published(status) => {
                    seq += versions;
                    state.insert.record(crate::clock::now_ns() - sent);
                    state.progress.acked += versions;
                    false
                }
                Ok(status) => {
                    let body = String::from_utf8_lossy(client.body());
                    let body: String = body.chars().take(200).collect();
                    state.note_error(format!("publish: status {status}: {body}"));
                    true
                }
                Err(error) => {
                    state.note_error(format!("publish: {error:#}"));
                    true
                }
            }
        };
        if failed {
            state.borrow_mut().progress.publish_errors += 1;
            // Give a refusing server a moment rather than spinning on it.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut state = state.borrow_mut();
    state.acked.push((id, seq));
    state.progress.publishing -= 1;
}
