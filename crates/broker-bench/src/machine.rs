//! What the machine is: cores, CPU model, kernel, memory, compiler, limits.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

/// The facts that go into a report beside the figures.
pub(crate) fn describe() -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    facts.insert("nproc".to_owned(), cpus.to_string());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|line| line.strip_prefix("model name")?.split_once(':'));
    facts.insert("cpu".to_owned(), model.map_or("unknown".into(), |(_, m)| m.trim().to_owned()));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    facts.insert("kernel".to_owned(), kernel.trim().to_owned());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = meminfo.lines().find_map(|line| line.strip_prefix("MemTotal:")).unwrap_or_default();
    facts.insert("memory".to_owned(), total.trim().to_owned());
    let rustc = Command::new("rustc").arg("-V").output().map(|out| out.stdout).unwrap_or_default();
    facts.insert("rustc".to_owned(), String::from_utf8_lossy(&rustc).trim().to_owned());
    let nginx = Command::new("nginx").arg("-v").output().map(|out| out.stderr).unwrap_or_default();
    facts.insert("nginx".to_owned(), String::from_utf8_lossy(&nginx).trim().to_owned());
    let files = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or("unknown".into(), |(soft, hard)| format!("{soft} (hard {hard})"));
    facts.insert("open_files_limit".to_owned(), files);
    let network = if std::env::var_os(crate::netns::MARKER).is_some() {
        "loopback-only network namespace"
    } else {
        "host loopback"
    };
    facts.insert("network".to_owned(), network.to_owned());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    facts.insert("unix_time".to_owned(), now.map_or(0, |d| d.as_secs()).to_string());
    facts
}
