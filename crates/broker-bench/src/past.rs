//! The past scenario: on a store of many versions, how long `GET /snapshot?at=` takes to answer
//! the state at a past id or time, beside `GET /snapshot` (the current state, from memory: the
//! baseline of the same run) and `GET /audit/{event}` (one event's whole history).
//!
//! Every answer is read to its end on one keep-alive connection, one request after another, and
//! checked against the store's known layout (see [`prepare::fill`]) once its time is taken.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde::Deserialize;

use crate::client::Client;
use crate::hist::Histogram;
use crate::load::Context;
use crate::prepare;
use crate::report::Outcome;
use crate::server::Server;
use crate::target::Target;

/// How long one answer may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// Where the points asked for come from: every run asks for the same ones.
const SEED: u64 = 0x7061_7374;

/// The kinds of request timed, in the order each round sends them, with the prefix of their
/// metrics.
const KINDS: [&str; 4] = ["past_latest", "past_at_id", "past_at_time", "past_audit"];

/// Prepares a store of `versions` versions over `events` events, starts `target` on it, and times
/// `repeats` requests of each kind.
pub(crate) async fn run(
    ctx: &Context,
    target: Target,
    versions: u64,
    events: u64,
    repeats: usize,
    payload: usize,
) -> anyhow::Result<Outcome> {
    match target {
        Target::Nchan => {
            return Ok(Outcome::not_applicable(
                "nchan keeps no past state: a channel holds only its newest messages",
            ));
        }
        Target::Broker => {
            return Ok(Outcome::not_applicable(
                "broker 0.2.0 has no past state: no `/snapshot`, and one version per event and \
                 second",
            ));
        }
        Target::OursNats => {
            return Ok(Outcome::not_applicable(
                "its database is a NATS stream, which this scenario does not prepare",
            ));
        }
        Target::Ours => {}
    }
    ensure!(versions > 0 && events > 0, "the past scenario needs at least one version and event");
    let layout = Layout { versions, events };
    let mut outcome = Outcome::default();
    let dir = tempfile::tempdir_in(&ctx.work_dir).context("create a data directory")?;
    let db = dir.path().join("b.redb");
    let took = prepare::fill(&db, versions, events, payload).await?;
    outcome.set("prepare_s", took.as_secs_f64());
    outcome.set("versions", versions as f64);
    outcome.set("db_mib", std::fs::metadata(&db)?.len() as f64 / (1024.0 * 1024.0));

    let server = Server::start(target, &ctx.programs, dir.path(), 1000).await?;
    outcome.set("rss_idle_mib", server.processes().rss_kib() as f64 / 1024.0);
    let measured = measure(&server, layout, repeats, &mut outcome).await;
    outcome.set("rss_after_mib", server.processes().rss_kib() as f64 / 1024.0);
    server.stop().await;
    measured?;
    Ok(outcome)
}

/// Picks the points, then sends `repeats` rounds of one request of each kind.
async fn measure(
    server: &Server,
    layout: Layout,
    repeats: usize,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let mut client = Client::new(server.addr(), Ipv4Addr::UNSPECIFIED);
    let mut points = Points(SEED);
    // The times asked for are those of versions picked at random, read before any request is
    // timed, so that each has a known answer: every version has its own timestamp.
    eprintln!("  [{}] picking {repeats} points of the past", server.target);
    let mut rounds = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let at = 1 + points.below(layout.versions);
        let stamped = 1 + points.below(layout.versions);
        let time = rfc3339(timestamp_of(&mut client, layout, stamped).await?);
        let audited = points.below(layout.events);
        rounds.push([
            Probe { path: "/snapshot".into(), expect: layout.state_at(layout.versions) },
            Probe { path: format!("/snapshot?at={at}"), expect: layout.state_at(at) },
            Probe { path: format!("/snapshot?at={time}"), expect: layout.state_at(stamped) },
            Probe {
                path: format!("/audit/{}", prepare::event(audited)),
                expect: layout.history_of(audited),
            },
        ]);
    }
    eprintln!("  [{}] timing {repeats} rounds of {} requests", server.target, KINDS.len());
    let mut times: [Histogram; KINDS.len()] = Default::default();
    let mut bytes = [0usize; KINDS.len()];
    for round in &rounds {
        for (kind, probe) in round.iter().enumerate() {
            let request = get(&probe.path);
            let started = Instant::now();
            let status = tokio::time::timeout(PATIENCE, client.request(&request))
                .await
                .with_context(|| format!("GET {}: no answer within {PATIENCE:?}", probe.path))??;
            let took = started.elapsed();
            check(status, client.body(), probe.expect)
                .with_context(|| format!("GET {}", probe.path))?;
            times[kind].record(took.as_nanos() as u64);
            bytes[kind] += client.body().len();
        }
    }
    for ((kind, times), bytes) in KINDS.iter().zip(&times).zip(bytes) {
        outcome.set(&format!("{kind}_p50_ms"), times.quantile(0.5) as f64 / 1e6);
        outcome.set(&format!("{kind}_p99_ms"), times.quantile(0.99) as f64 / 1e6);
        outcome.set(&format!("{kind}_max_ms"), times.max() as f64 / 1e6);
        outcome.set(&format!("{kind}_kib"), bytes as f64 / 1024.0 / repeats.max(1) as f64);
    }
    outcome.note(format!(
        "{repeats} rounds of the four requests on one keep-alive connection, each answer read \
         to its end and checked version by version"
    ));
    Ok(())
}

/// The timestamp of the version with id `id`, from its event's history.
async fn timestamp_of(client: &mut Client, layout: Layout, id: u64) -> anyhow::Result<u64> {
    #[derive(Deserialize)]
    struct Stamped {
        id: u64,
        timestamp: u64,
    }
    let path = format!("/audit/{}?after={}&limit=1", prepare::event(layout.event_of(id)), id - 1);
    let status = tokio::time::timeout(PATIENCE, client.request(&get(&path)))
        .await
        .with_context(|| format!("GET {path}: no answer within {PATIENCE:?}"))??;
    ensure!(status == 200, "GET {path}: status {status}");
    let page: Vec<Stamped> = serde_json::from_slice(client.body())
        .with_context(|| format!("GET {path}: not a JSON array of versions"))?;
    match page.first() {
        Some(version) if version.id == id => Ok(version.timestamp),
        _ => anyhow::bail!("GET {path}: version {id} is not where the store was prepared"),
    }
}

/// A request and what its answer must hold.
struct Probe {
    path: String,
    expect: Ids,
}

/// The ids an answer must list, in this order: `count` of them, from `first`, `stride` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ids {
    first: u64,
    stride: u64,
    count: usize,
}

/// Checks that an answer is `200` and a JSON array of exactly the versions `expect` names.
fn check(status: u16, body: &[u8], expect: Ids) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct Listed {
        id: u64,
    }
    let start = String::from_utf8_lossy(&body[..body.len().min(200)]);
    ensure!(status == 200, "status {status}: {start}");
    let listed: Vec<Listed> =
        serde_json::from_slice(body).context("the answer is not a JSON array of versions")?;
    ensure!(
        listed.len() == expect.count,
        "{} versions where {} were expected",
        listed.len(),
        expect.count
    );
    let ids = (0..).map(|index| expect.first + index * expect.stride);
    if let Some((got, want)) = listed.iter().map(|v| v.id).zip(ids).find(|(got, want)| got != want)
    {
        anyhow::bail!("version {got} listed where {want} was expected");
    }
    Ok(())
}

/// The shape of a store written by [`prepare::fill`]: version `id` is of event `(id - 1) %
/// events`, and stamped after every version before it.
#[derive(Clone, Copy, Debug)]
struct Layout {
    versions: u64,
    events: u64,
}

impl Layout {
    /// The index of the event of version `id`.
    fn event_of(self, id: u64) -> u64 {
        (id - 1) % self.events
    }

    /// The state once version `at` was committed: the latest version of every event that had
    /// one, which are the last versions up to `at`, one per event.
    fn state_at(self, at: u64) -> Ids {
        let count = at.min(self.events);
        Ids { first: at - count + 1, stride: 1, count: count as usize }
    }

    /// The whole history of the event with index `event`.
    fn history_of(self, event: u64) -> Ids {
        let count = self.versions / self.events + u64::from(event < self.versions % self.events);
        Ids { first: event + 1, stride: self.events, count: count as usize }
    }
}

/// SplitMix64: a few lines of well-spread numbers, with no dependency for them.
struct Points(u64);

impl Points {
    /// A number below `n` (which is not 0); the bias of the modulo is negligible for the `n`
    /// used here.
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// `GET path` on a keep-alive connection.
fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

/// `millis` since the Unix epoch as an RFC 3339 time in UTC, to the millisecond.
fn rfc3339(millis: u64) -> String {
    let (days, time) = (millis / 86_400_000, millis % 86_400_000);
    // Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (never before it here): a
    // 400-year era of 146,097 days, years counted from March so that the leap day comes last.
    let z = days + 719_468;
    let (era, day_of_era) = (z / 146_097, z % 146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        time / 3_600_000,
        time / 60_000 % 60,
        time / 1000 % 60,
        time % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_in_utc() {
        let check = |millis: u64, expected: &str| assert_eq!(rfc3339(millis), expected);
        check(0, "1970-01-01T00:00:00.000Z");
        check(951_868_799_999, "2000-02-29T23:59:59.999Z");
        check(951_868_800_000, "2000-03-01T00:00:00.000Z");
        check(1_764_279_000_123, "2025-11-27T21:30:00.123Z");
        check(4_107_542_400_000, "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn layout_names_the_versions_of_each_answer() {
        // Ten versions over four events: ids 1, 5, 9 of event 0; 2, 6, 10 of event 1; 3, 7 of
        // event 2; 4, 8 of event 3.
        let layout = Layout { versions: 10, events: 4 };
        let ids = |first, stride, count| Ids { first, stride, count };
        assert_eq!(layout.state_at(1), ids(1, 1, 1));
        assert_eq!(layout.state_at(3), ids(1, 1, 3));
        assert_eq!(layout.state_at(7), ids(4, 1, 4));
        assert_eq!(layout.state_at(10), ids(7, 1, 4));
        assert_eq!(layout.history_of(0), ids(1, 4, 3));
        assert_eq!(layout.history_of(1), ids(2, 4, 3));
        assert_eq!(layout.history_of(3), ids(4, 4, 2));
        assert_eq!(
            (1..=10).map(|id| layout.event_of(id)).collect::<Vec<_>>(),
            [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
        );
    }

    #[test]
    fn answers_must_list_exactly_the_expected_versions() {
        let expect = Ids { first: 2, stride: 4, count: 2 };
        let body = |json: &str| json.as_bytes().to_vec();
        let ok = body(r#"[{"id":2,"event":"e00001","data":{}},{"id":6,"event":"e00001"}]"#);
        assert!(check(200, &ok, expect).is_ok());
        assert!(check(404, &ok, expect).is_err());
        assert!(check(200, &body(r#"[{"id":2},{"id":5}]"#), expect).is_err());
        assert!(check(200, &body(r#"[{"id":2}]"#), expect).is_err());
        assert!(check(200, &body(r#"[{"id":2},{"id":6}"#), expect).is_err());
    }
}
