//! What a load run watches while it runs: CPU time of the server and of the load generator,
//! the server's peak memory, a progress line every second, and the verdict on which side limited
//! the run.

use std::time::Instant;

use crate::fleet::Fleet;
use crate::procfs::{self, Processes};
use crate::progress::Progress;

/// CPU use above which a single-threaded worker counts as saturated.
const SATURATED_PCT: f64 = 90.0;

/// Says which side limited the run, from CPU use over the measurement window.
pub(crate) fn bottleneck(
    server_pct: f64,
    loadgen_pct: f64,
    busiest_worker_pct: f64,
    offered_met: bool,
) -> String {
    let cores = std::thread::available_parallelism().map_or(2, usize::from) as f64;
    let shares =
        format!("server {server_pct:.0}%, load generator {loadgen_pct:.0}% of {cores:.0} cores");
    if offered_met {
        format!("none, the offered load was met ({shares})")
    } else if busiest_worker_pct >= SATURATED_PCT {
        format!(
            "the LOAD GENERATOR: one of its single-threaded processes ran at {busiest_worker_pct:.0}% ({shares})"
        )
    } else if server_pct + loadgen_pct >= 0.9 * cores * 100.0 {
        let side = if server_pct >= loadgen_pct { "server" } else { "LOAD GENERATOR" };
        format!("the machine's CPUs, mostly used by the {side} ({shares})")
    } else {
        format!(
            "the server's latency, with CPUs to spare: every publisher waits for its \
             acknowledgement, so throughput is publishers / latency ({shares})"
        )
    }
}

/// CPU seconds of the server and of the load generator at one moment.
pub(crate) struct Cpu {
    pub(crate) server: f64,
    /// The kernel's part of `server`.
    pub(crate) server_kernel: f64,
    pub(crate) coordinator: f64,
    pub(crate) workers: Vec<f64>,
    pub(crate) machine: f64,
}

impl Cpu {
    pub(crate) fn read(server: &Processes, fleet: &Fleet) -> Cpu {
        Cpu {
            server: server.cpu_seconds(),
            server_kernel: server.kernel_seconds(),
            coordinator: procfs::cpu_seconds(std::process::id()),
            workers: fleet.cpu_each(),
            machine: procfs::machine_busy_seconds(),
        }
    }

    pub(crate) fn loadgen(&self) -> f64 {
        self.coordinator + self.workers.iter().sum::<f64>()
    }
}

/// Prints a progress line every second and keeps the server's peak memory.
pub(crate) struct Monitor {
    label: String,
    server: Processes,
    last: Instant,
    last_server_cpu: f64,
    last_loadgen_cpu: f64,
    last_acked: u64,
    last_unique: u64,
    pub(crate) peak_rss_kib: u64,
}

impl Monitor {
    pub(crate) fn new(label: &str, server: Processes, fleet: &Fleet) -> Monitor {
        let loadgen = fleet.processes().cpu_seconds() + procfs::cpu_seconds(std::process::id());
        Monitor {
            label: label.to_owned(),
            last_server_cpu: server.cpu_seconds(),
            server,
            last: Instant::now(),
            last_loadgen_cpu: loadgen,
            last_acked: 0,
            last_unique: 0,
            peak_rss_kib: 0,
        }
    }

    pub(crate) fn tick(&mut self, fleet: &Fleet, phase: &str, total: &Progress) {
        let rss = self.server.rss_kib();
        self.peak_rss_kib = self.peak_rss_kib.max(rss);
        let elapsed = self.last.elapsed().as_secs_f64();
        if elapsed < 1.0 {
            return;
        }
        let server_cpu = self.server.cpu_seconds();
        let loadgen_cpu = fleet.processes().cpu_seconds() + procfs::cpu_seconds(std::process::id());
        eprintln!(
            "  [{}] {phase:<10} subs {}/{} ready{} | inserts {} ({:.0}/s) | deliveries {} ({:.0}/s) | server CPU {:.0}% RSS {:.1} MiB | load gen CPU {:.0}%",
            self.label,
            total.ready,
            total.ready + total.failed,
            if total.failed + total.closed > 0 {
                format!(" ({} failed, {} closed)", total.failed, total.closed)
            } else {
                String::new()
            },
            total.acked,
            (total.acked - self.last_acked.min(total.acked)) as f64 / elapsed,
            total.unique,
            (total.unique - self.last_unique.min(total.unique)) as f64 / elapsed,
            (server_cpu - self.last_server_cpu) / elapsed * 100.0,
            rss as f64 / 1024.0,
            (loadgen_cpu - self.last_loadgen_cpu) / elapsed * 100.0,
        );
        self.last = Instant::now();
        self.last_server_cpu = server_cpu;
        self.last_loadgen_cpu = loadgen_cpu;
        self.last_acked = total.acked;
        self.last_unique = total.unique;
    }
}
