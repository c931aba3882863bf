//! Free TCP ports for the servers under test and the NATS cluster under them.

use std::net::{Ipv4Addr, TcpListener};

use anyhow::bail;

/// A port nothing uses right now, below the ephemeral range (32768 and up on Linux).
///
/// A port the system hands out for outgoing connections would do for a moment, but a load
/// generator's closed connections linger on ephemeral ports, and broker 0.2.0, which binds
/// `0.0.0.0`, then fails to bind. Inside the benchmark's own network namespace the test binds
/// `0.0.0.0` like it; outside it binds loopback only.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `count` distinct ports that nothing uses right now, as [`free_port`] picks them: each is held
/// until all are chosen.
pub(crate) fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let ip = if crate::netns::inside() { Ipv4Addr::UNSPECIFIED } else { Ipv4Addr::LOCALHOST };
    let seed = std::process::id() as usize + crate::clock::now_ns() as usize;
    let mut held = Vec::with_capacity(count);
    for n in 0..12_000 {
        let port = 20_000 + ((seed + n * 7919) % 12_000) as u16;
        if let Ok(listener) = TcpListener::bind((ip, port)) {
            held.push((port, listener));
            if held.len() == count {
                return Ok(held.into_iter().map(|(port, _)| port).collect());
            }
        }
    }
    bail!("not {count} free ports between 20000 and 32000")
}
