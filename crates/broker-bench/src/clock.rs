//! The one clock every process of a run shares: `CLOCK_MONOTONIC`, in nanoseconds.
//!
//! A publisher writes its send time into the payload and a subscriber in another process
//! subtracts it from its receipt time, so both must read the same clock. `std::time::Instant`
//! reads `CLOCK_MONOTONIC` too but cannot be carried across processes; this reads it directly.

use nix::time::{ClockId, clock_gettime};

/// Nanoseconds of `CLOCK_MONOTONIC`: comparable between every process on the machine.
pub(crate) fn now_ns() -> u64 {
    // `clock_gettime` fails only for a clock id the kernel does not know, and every Linux kernel
    // has CLOCK_MONOTONIC.
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always readable");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}
