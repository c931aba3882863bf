//! What `/proc` says about a process: resident memory, CPU time, children.

use std::fs;
use std::sync::OnceLock;

/// Resident memory of `pid` in KiB (`VmRSS`), or 0 when the process is gone.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, field: &str) -> u64 {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time `pid` used so far, user and system, in seconds; 0 when the process is gone.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = cpu_split(pid);
    user + system
}

/// CPU time `pid` used so far in user space and in the kernel, in seconds; 0 when the process is
/// gone.
pub(crate) fn cpu_split(pid: u32) -> (f64, f64) {
    let Some(fields) = stat_fields(pid) else { return (0.0, 0.0) };
    // After the command name: state is field 3, utime 14 and stime 15 (man 5 proc), so 11 and 12
    // here.
    let ticks = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) as f64 / clock_ticks(), ticks(12) as f64 / clock_ticks())
}

/// The fields of `/proc/PID/stat` after the command name, which may itself hold spaces.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU time the whole machine spent busy so far (every core, every process), in seconds.
pub(crate) fn machine_busy_seconds() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/stat") else { return 0.0 };
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else { return 0.0 };
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let busy: u64 =
        ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    busy as f64 / clock_ticks()
}

/// Waits until other processes use less than `limit_pct` % of one core (measured over a second),
/// for at most `patience`; returns what they used at the last measure.
///
/// The machine may be shared (builds, tests): a benchmark started while it is busy measures the
/// neighbours as much as the server.
pub(crate) async fn wait_for_quiet(limit_pct: f64, patience: std::time::Duration) -> f64 {
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        let before = machine_busy_seconds();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let used = (machine_busy_seconds() - before) * 100.0;
        if used < limit_pct || started.elapsed() >= patience {
            return used;
        }
        if !told {
            eprintln!(
                "  waiting for the machine to be quiet: other processes use {used:.0}% of a core"
            );
            told = true;
        }
    }
}

/// The processes whose parent is `pid`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            stat_fields(child).and_then(|fields| fields.get(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

/// Kernel clock ticks per second, the unit of `/proc/PID/stat` times.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        use nix::unistd::{SysconfVar, sysconf};
        // Linux has reported 100 on every architecture for decades; sysconf only confirms it.
        sysconf(SysconfVar::CLK_TCK).ok().flatten().map_or(100.0, |ticks| ticks as f64)
    })
}

/// A set of processes measured together (nginx's master and workers, or the load generator's).
#[derive(Clone, Debug, Default)]
pub(crate) struct Processes(pub(crate) Vec<u32>);

impl Processes {
    pub(crate) fn rss_kib(&self) -> u64 {
        self.0.iter().map(|&pid| rss_kib(pid)).sum()
    }

    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.0.iter().map(|&pid| cpu_seconds(pid)).sum()
    }

    /// The part of [`Processes::cpu_seconds`] spent in the kernel: system calls, the network
    /// stack, page faults.
    pub(crate) fn kernel_seconds(&self) -> f64 {
        self.0.iter().map(|&pid| cpu_split(pid).1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let me = std::process::id();
        assert!(rss_kib(me) > 0);
        let spin = (0..5_000_000u64).fold(0u64, |acc, n| acc.wrapping_add(n * n));
        assert!(spin > 0);
        assert!(cpu_seconds(me) >= 0.0);
        assert_eq!(rss_kib(u32::MAX), 0);
        assert_eq!(cpu_split(u32::MAX), (0.0, 0.0));
        // Reading the files of many processes is system calls: kernel time, counted apart.
        let (_, kernel_before) = cpu_split(me);
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
        while std::time::Instant::now() < deadline {
            for _ in 0..100 {
                let _ = stat_fields(me);
            }
        }
        let (user, kernel) = cpu_split(me);
        assert!(kernel > kernel_before, "kernel time {kernel_before} s did not grow");
        assert!((cpu_seconds(me) - (user + kernel)).abs() < 0.05);
        assert!(machine_busy_seconds() > 0.0);
    }
}
