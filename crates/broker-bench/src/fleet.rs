//! [`Fleet`]: the worker processes of one run, their commands and their reports.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::procfs::{self, Processes};
use crate::progress::{Final, Progress, Report};
use crate::worker::WorkerConfig;

/// Running workers. Dropping the fleet kills them.
pub(crate) struct Fleet {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    publishes: Vec<bool>,
    reports: mpsc::UnboundedReceiver<(usize, Report)>,
    latest: Vec<Progress>,
    finals: Vec<Option<Final>>,
}

impl Fleet {
    /// Starts one worker process per configuration, running this same binary.
    pub(crate) fn spawn(exe: &Path, configs: &[WorkerConfig]) -> anyhow::Result<Fleet> {
        let (sender, reports) = mpsc::unbounded_channel();
        let mut fleet = Fleet {
            children: Vec::new(),
            stdins: Vec::new(),
            publishes: Vec::new(),
            reports,
            latest: vec![Progress::default(); configs.len()],
            finals: configs.iter().map(|_| None).collect(),
        };
        for (index, config) in configs.iter().enumerate() {
            let mut child = Command::new(exe)
                .arg("worker")
                .arg(serde_json::to_string(config)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a worker process")?;
            let stdout = child.stdout.take().context("worker without standard output")?;
            let stdin = child.stdin.take().context("worker without standard input")?;
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Report>(&line) {
                        Ok(report) => {
                            if sender.send((index, report)).is_err() {
                                break;
                            }
                        }
                        Err(error) => eprintln!("worker {index}: unreadable report: {error}"),
                    }
                }
            });
            fleet.children.push(child);
            fleet.stdins.push(stdin);
            fleet.publishes.push(config.publishers.is_some());
        }
        Ok(fleet)
    }

    /// Sends `command` to every worker, or only to those with publishers.
    pub(crate) async fn command(&mut self, command: &str, publishers_only: bool) {
        for (stdin, publishes) in self.stdins.iter_mut().zip(&self.publishes) {
            if publishes | !publishers_only {
                // A worker that died shows in its missing reports.
                let _ = stdin.write_all(format!("{command}\n").as_bytes()).await;
                let _ = stdin.flush().await;
            }
        }
    }

    /// Takes the reports that arrive within `wait`.
    pub(crate) async fn pump(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some((index, report))) =
            tokio::time::timeout_at(deadline, self.reports.recv()).await
        {
            match report {
                Report::Progress(progress) => self.latest[index] = progress,
                Report::Final(last) => {
                    self.latest[index] = last.progress.clone();
                    self.finals[index] = Some(*last);
                }
            }
        }
    }

    /// The counters of every worker added up.
    pub(crate) fn total(&self) -> Progress {
        self.latest.iter().fold(Progress::default(), |mut sum, p| {
            sum.connected += p.connected;
            sum.ready += p.ready;
            sum.failed += p.failed;
            sum.closed += p.closed;
            sum.unique += p.unique;
            sum.duplicates += p.duplicates;
            sum.gaps += p.gaps;
            sum.others += p.others;
            sum.last_delivery_ns = sum.last_delivery_ns.max(p.last_delivery_ns);
            sum.acked += p.acked;
            sum.publish_errors += p.publish_errors;
            sum.publishing += p.publishing;
            if sum.first_error.is_none() {
                sum.first_error.clone_from(&p.first_error);
            }
            sum
        })
    }

    /// The worker processes.
    pub(crate) fn processes(&self) -> Processes {
        Processes(self.children.iter().filter_map(Child::id).collect())
    }

    /// CPU seconds of each worker so far.
    pub(crate) fn cpu_each(&self) -> Vec<f64> {
        self.processes().0.iter().map(|&pid| procfs::cpu_seconds(pid)).collect()
    }

    /// Asks every worker for its final report and waits for them (30 s at most).
    pub(crate) async fn finish(mut self) -> Vec<Final> {
        self.command("finish", false).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.finals.iter().any(Option::is_none) && tokio::time::Instant::now() < deadline {
            self.pump(Duration::from_millis(100)).await;
        }
        for child in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        self.finals.into_iter().flatten().collect()
    }
}
