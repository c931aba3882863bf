//! The shape of a load run ([`Load`]) and how it is shared out: subscribers over as many worker
//! processes as the file limit needs, publishers in workers of their own, and each over the
//! nodes of a server with several, in turn.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::target::Target;
use crate::worker::{Events, PublisherPlan, WorkerConfig};

/// The event every load run publishes to: one name, so that broker 0.2.0 sends each update once.
pub(crate) const EVENT: &str = "bench";
/// The most connections one worker process holds, well under the limit of 20,000 open files.
const PER_WORKER: usize = 9000;

/// The shape of one load run.
#[derive(Clone, Debug)]
pub(crate) struct Load {
    pub(crate) subscribers: usize,
    pub(crate) publishers: u32,
    /// Publishes per second of all publishers together; `None` for flat out.
    pub(crate) rate: Option<f64>,
    pub(crate) payload: usize,
    /// How long publishers publish.
    pub(crate) duration: Duration,
    /// How long idle subscribers are held before their memory is read.
    pub(crate) hold: Duration,
    pub(crate) publisher_workers: u32,
    /// Publishers go to the first this many nodes of a server with several; `None` for all.
    pub(crate) publish_nodes: Option<usize>,
    /// Versions per publish: each request is an array of this many, stored in one commit (our
    /// server only); `None` for one version per request. `rate` counts requests.
    pub(crate) bulk: Option<usize>,
    /// Subscribers open their streams over this many HTTP/2 connections in all (h2c, our server
    /// only), shared out among the workers as the subscribers are; `None` for HTTP/1.1, a
    /// connection each.
    pub(crate) h2_connections: Option<usize>,
}

/// Subscribers spread over as many workers as the file limit needs (and at least two, one per
/// core), publishers in workers of their own.
pub(crate) fn worker_configs(
    target: Target,
    addrs: &[SocketAddr],
    load: &Load,
) -> Vec<WorkerConfig> {
    let subscriber_workers = if load.subscribers == 0 {
        0
    } else {
        load.subscribers.div_ceil(PER_WORKER).max(2.min(load.subscribers))
    };
    let base = WorkerConfig {
        addrs: addrs.to_vec(),
        target,
        // Binding a source address before connecting makes the kernel search for a free port
        // among every socket bound to it, which grows costly past a few thousand: let
        // connect() pick the port.
        source: Ipv4Addr::UNSPECIFIED,
        subscribers: 0,
        first_subscriber: 0,
        subscribe_path: target.subscribe_path(Some(EVENT)),
        // Our server listens with a backlog of 128 (tokio's default); more connections in flight
        // than that overflow its accept queue and cost SYN retries of a second or more.
        connect_parallel: 32,
        ready_on_head: target == Target::Nchan,
        publisher_ids: load.publishers,
        publishers: None,
        h2_connections: 0,
    };
    let mut configs = Vec::new();
    let mut first_subscriber = 0;
    for index in 0..subscriber_workers {
        let share = load.subscribers / subscriber_workers
            + usize::from(index < load.subscribers % subscriber_workers);
        let h2_connections = load.h2_connections.map_or(0, |total| {
            (total / subscriber_workers + usize::from(index < total % subscriber_workers)).max(1)
        });
        configs.push(WorkerConfig {
            subscribers: share,
            first_subscriber,
            h2_connections,
            ..base.clone()
        });
        first_subscriber += share;
    }
    let workers = load.publisher_workers.clamp(1, load.publishers.max(1));
    for index in 0..workers {
        if load.publishers == 0 {
            break;
        }
        let count = load.publishers / workers + u32::from(index < load.publishers % workers);
        let first_id = 1
            + (0..index)
                .map(|i| load.publishers / workers + u32::from(i < load.publishers % workers))
                .sum::<u32>();
        let publish_nodes = load.publish_nodes.unwrap_or(addrs.len()).clamp(1, addrs.len());
        let plan = PublisherPlan {
            addrs: addrs[..publish_nodes].to_vec(),
            first_id,
            count,
            rate: load.rate.map(|rate| rate / f64::from(load.publishers)),
            payload: load.payload,
            events: Events::One(EVENT.to_owned()),
            bulk: load.bulk,
        };
        configs.push(WorkerConfig { publishers: Some(plan), ..base.clone() });
    }
    configs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many subscribers and publishers each of `nodes` gets for `load`.
    fn spread(nodes: usize, load: &Load) -> Vec<(usize, u32)> {
        let addrs: Vec<SocketAddr> = (0..nodes)
            .map(|node| SocketAddr::from((Ipv4Addr::LOCALHOST, 9000 + node as u16)))
            .collect();
        let mut counts = vec![(0, 0); nodes];
        for config in worker_configs(Target::OursNats, &addrs, load) {
            for index in 0..config.subscribers {
                let addr = config.subscriber_addr(index);
                counts[addrs.iter().position(|a| *a == addr).expect("one of the nodes")].0 += 1;
            }
            if let Some(plan) = &config.publishers {
                for id in plan.first_id..plan.first_id + plan.count {
                    let addr = plan.addr(id);
                    counts[addrs.iter().position(|a| *a == addr).expect("one of the nodes")].1 += 1;
                }
            }
        }
        counts
    }

    #[test]
    fn load_is_spread_over_the_nodes_in_turn() {
        let load = |subscribers, publishers, publish_nodes| Load {
            subscribers,
            publishers,
            rate: None,
            payload: 100,
            duration: Duration::from_secs(1),
            hold: Duration::ZERO,
            publisher_workers: 1,
            publish_nodes,
            bulk: None,
            h2_connections: None,
        };
        for (nodes, load, expected) in [
            (1, load(1000, 64, None), vec![(1000, 64)]),
            (2, load(1000, 64, None), vec![(500, 32), (500, 32)]),
            (2, load(0, 64, Some(1)), vec![(0, 64), (0, 0)]),
            (2, load(19_000, 0, None), vec![(9_500, 0), (9_500, 0)]),
            (3, load(1000, 64, None), vec![(334, 21), (333, 22), (333, 21)]),
        ] {
            assert_eq!(spread(nodes, &load), expected, "{nodes} nodes, {load:?}");
        }
    }
}
