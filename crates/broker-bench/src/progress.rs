//! What a worker reports to the coordinator, one JSON line at a time: its counters as it goes,
//! then everything it measured.

use serde::{Deserialize, Serialize};

use crate::hist::SparseHistogram;

/// Counters of a worker, sent as progress and in the final report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// Subscribers whose response head arrived.
    pub(crate) connected: u64,
    /// Subscribers that received the warm-up version: registered with the server.
    pub(crate) ready: u64,
    /// Subscribers that could not connect or were refused.
    pub(crate) failed: u64,
    /// Subscribers whose stream ended or broke after it started.
    pub(crate) closed: u64,
    /// Versions received for the first time.
    pub(crate) unique: u64,
    /// Versions received again, or older than one already received from the same publisher.
    pub(crate) duplicates: u64,
    /// Versions skipped: a later version of the same publisher arrived first.
    pub(crate) gaps: u64,
    /// Frames that carry no benchmark payload (a server's own pings).
    pub(crate) others: u64,
    /// When the last new version arrived (`clock::now_ns`).
    pub(crate) last_delivery_ns: u64,
    /// Versions whose publish was acknowledged: one per request, or every version of an array.
    pub(crate) acked: u64,
    /// Publishes that failed (and were retried).
    pub(crate) publish_errors: u64,
    /// Publishers still running.
    pub(crate) publishing: u32,
    /// The first error met, for the report.
    pub(crate) first_error: Option<String>,
}

/// One line of a worker's standard output.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    Progress(Progress),
    Final(Box<Final>),
}

/// Everything a worker measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Final {
    pub(crate) progress: Progress,
    /// Delivery latency: receipt time minus the publisher's send time, in nanoseconds.
    pub(crate) delivery: SparseHistogram,
    /// Insert latency: request sent to acknowledgement received, in nanoseconds.
    pub(crate) insert: SparseHistogram,
    /// The last acknowledged sequence number of each publisher.
    pub(crate) acked: Vec<(u32, u64)>,
}
