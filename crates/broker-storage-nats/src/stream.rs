//! The stream that holds the database: created on first use with the settings below, and
//! checked at every start-up, so that a stream that could lose or delete versions is refused
//! with a message that says what to change.
//!
//! The settings, and why:
//!
//! - `subjects: ["<stream>.>"]`, `retention: limits`, no `max_msgs`, `max_bytes`, `max_age` or
//!   `max_msgs_per_subject`: versions are kept for ever. `discard: new`, so that a limit added by
//!   hand later makes appends fail as full instead of deleting the oldest versions.
//! - `deny_delete`, `deny_purge`: no API call can remove a version. With
//!   [`NatsOptions::prune`] the stream allows purges instead, the one way `prune.rs` removes
//!   versions (a prefix of one event's history at a time), and refuses rollup headers, which
//!   would purge on a publish. NATS lets `deny_purge` be set on a stream later, never lifted.
//! - `num_replicas`: the configured number; a stream with another is refused.
//! - `allow_direct`: reads are served by every replica; `allow_atomic`: a batch is stored whole
//!   or not at all.
//! - `duplicate_window`: the idempotency window.
//! - `metadata.broker_database_id`: the database's identity, a UUID made with the stream.

use std::time::Duration;

use async_nats::Client;
use broker_storage::{StorageError, Uuid};
use serde_json::{Value, json};

use crate::api::{self, ApiError, codes};
use crate::options::NatsOptions;
use crate::subject;

/// The metadata key of the database identity.
pub(crate) const DATABASE_ID: &str = "broker_database_id";

/// What [`open`] found of the stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opened {
    /// The database identity.
    pub(crate) database_id: Uuid,
    /// The stream's last sequence.
    pub(crate) last: u64,
    /// The stream's `duplicate_window`.
    pub(crate) duplicate_window: Duration,
}

/// Finds or creates the stream of `options` and checks its settings.
///
/// A stream that was just created, by this broker or another, answers its info only once its
/// replicas have elected a leader; until then, and until the retry timeout, the info is asked
/// for again. One this broker creates is waited for until it has a leader with a quorum, so
/// that the first append does not find nobody to answer it.
pub(crate) async fn open(client: &Client, options: &NatsOptions) -> Result<Opened, StorageError> {
    let stream = &options.stream;
    let deadline = tokio::time::Instant::now() + options.retry_timeout;
    let info = loop {
        match info(client, stream, options.request_timeout).await {
            Ok(info) => break info,
            Err(ApiError::Api(error)) if error.err_code == codes::STREAM_NOT_FOUND => {
                let created = create(client, options).await?;
                while let Err(error) = writable(client, options).await {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(error);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                break created;
            }
            Err(error) => {
                let error = error.into_storage(&format!("stream info of {stream}"));
                if !matches!(error, StorageError::Unavailable(_))
                    || tokio::time::Instant::now() >= deadline
                {
                    return Err(error);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let database_id = check(&info["config"], options)?;
    Ok(Opened {
        database_id,
        last: info["state"]["last_seq"].as_u64().unwrap_or(0),
        duplicate_window: Duration::from_nanos(
            info["config"]["duplicate_window"].as_u64().unwrap_or(0),
        ),
    })
}

/// The stream's `$JS.API.STREAM.INFO` answer.
pub(crate) async fn info(
    client: &Client,
    stream: &str,
    timeout: Duration,
) -> Result<Value, ApiError> {
    api::request_json(client, format!("$JS.API.STREAM.INFO.{stream}"), &json!({}), timeout).await
}

/// Whether the stream can take writes now: it answers its info, has a leader, and the leader
/// hears from a quorum of its replicas.
///
/// A leader that lost its quorum goes on naming itself leader for a while (about 20 seconds
/// with nats-server 2.15) while every publish to it times out, and it marks its followers not
/// current only after about 10; so a follower counts only while the leader heard from it within
/// [`QUORUM_SILENCE`].
pub(crate) async fn writable(client: &Client, options: &NatsOptions) -> Result<(), StorageError> {
    let stream = &options.stream;
    let info = info(client, stream, options.request_timeout)
        .await
        .map_err(|error| error.into_storage(&format!("stream info of {stream}")))?;
    quorum(&info["cluster"], stream)
}

/// How long a leader may not have heard from a follower before the follower no longer counts
/// toward the quorum: a few of the leader's heartbeats, which it sends every second.
const QUORUM_SILENCE: Duration = Duration::from_secs(4);

/// Whether the `cluster` section of a stream's info shows a leader with a quorum.
fn quorum(cluster: &Value, stream: &str) -> Result<(), StorageError> {
    // A stream of a server that is not clustered has no cluster section, or no replicas.
    if cluster.is_null() {
        return Ok(());
    }
    if cluster["leader"].as_str().is_none_or(str::is_empty) {
        return Err(StorageError::Unavailable(format!("stream {stream} has no leader")));
    }
    let replicas = cluster["replicas"].as_array().map_or(&[][..], Vec::as_slice);
    let heard = replicas
        .iter()
        .filter(|replica| {
            replica["current"].as_bool() == Some(true)
                && replica["offline"].as_bool() != Some(true)
                && replica["active"]
                    .as_u64()
                    .is_some_and(|active| Duration::from_nanos(active) < QUORUM_SILENCE)
        })
        .count();
    let size = replicas.len() + 1;
    // The leader and the followers it hears from must be a majority.
    if heard < size / 2 {
        return Err(StorageError::Unavailable(format!(
            "stream {stream}'s leader hears from {heard} of its {} followers, short of a quorum",
            replicas.len()
        )));
    }
    Ok(())
}

/// Creates the stream, or finds the one another broker created at the same moment, and returns
/// its info.
async fn create(client: &Client, options: &NatsOptions) -> Result<Value, StorageError> {
    let stream = &options.stream;
    let config = json!({
        "name": stream,
        "subjects": [subject::all(stream)],
        "retention": "limits",
        "storage": "file",
        "num_replicas": options.replicas,
        "discard": "new",
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "max_msgs_per_subject": -1,
        "duplicate_window": options.duplicate_window.as_nanos() as u64,
        "deny_delete": true,
        "deny_purge": !options.prune,
        "allow_direct": true,
        "allow_atomic": true,
        "allow_rollup_hdrs": false,
        "metadata": { DATABASE_ID: Uuid::new_v4().to_string() },
    });
    create_or_find(client, options, stream, &config).await
}

/// Creates the stream `config` describes, named `stream`, or finds the one another broker
/// created at the same moment, and returns its info.
pub(crate) async fn create_or_find(
    client: &Client,
    options: &NatsOptions,
    stream: &str,
    config: &Value,
) -> Result<Value, StorageError> {
    let subject = format!("$JS.API.STREAM.CREATE.{stream}");
    match api::request_json(client, subject, config, options.request_timeout).await {
        Ok(created) => {
            tracing::info!(stream, replicas = options.replicas, "created the NATS stream");
            Ok(created)
        }
        Err(ApiError::Api(error)) if error.err_code == codes::STREAM_NAME_IN_USE => {
            // Another broker created it a moment ago; its info may take a moment to appear.
            let deadline = tokio::time::Instant::now() + options.retry_timeout;
            loop {
                match info(client, stream, options.request_timeout).await {
                    Err(ApiError::Api(error))
                        if error.err_code == codes::STREAM_NOT_FOUND
                            && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    answer => {
                        break answer.map_err(|error| {
                            error.into_storage(&format!("stream info of {stream}"))
                        });
                    }
                }
            }
        }
        Err(error) => Err(error.into_storage(&format!("creating stream {stream}"))),
    }
}

/// Checks a stream's configuration against what the storage needs, and returns its identity.
///
/// Every setting that could lose a version, or break a contract of the trait, is refused; the
/// message names the setting and the change that fixes it.
pub(crate) fn check(config: &Value, options: &NatsOptions) -> Result<Uuid, StorageError> {
    let stream = &options.stream;
    let refuse = |what: String| Err(StorageError::backend(format!("stream {stream}: {what}")));
    let int = |name: &str| config[name].as_i64().unwrap_or(0);
    let flag = |name: &str| config[name].as_bool().unwrap_or(false);
    let Some(id) = config["metadata"][DATABASE_ID].as_str() else {
        return refuse(format!(
            "has no {DATABASE_ID} in its metadata, so it was not created by a broker: \
             name another stream (--nats-stream), or delete this one if it holds nothing of value"
        ));
    };
    let Ok(id) = Uuid::parse_str(id) else {
        return refuse(format!("its {DATABASE_ID} {id:?} is not a UUID"));
    };
    let replicas = int("num_replicas").max(1) as usize;
    if replicas != options.replicas {
        return refuse(format!(
            "has {replicas} replicas but {} are configured: set --nats-replicas {replicas}, or \
             change the stream's replicas (nats stream edit {stream} --replicas {})",
            options.replicas, options.replicas
        ));
    }
    let all = subject::all(stream);
    let subjects: Vec<&str> =
        config["subjects"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if subjects != [all.as_str()] {
        return refuse(format!(
            "its subjects are {subjects:?}; a broker's stream has only {all:?}"
        ));
    }
    if config["retention"].as_str().unwrap_or("limits") != "limits" {
        return refuse(
            "its retention is not `limits`, so messages would be removed once read: recreate it"
                .into(),
        );
    }
    if !flag("deny_delete") {
        return refuse(format!(
            "allows deleting messages, which would lose versions: \
             nats stream edit {stream} --deny-delete"
        ));
    }
    match (options.prune, flag("deny_purge")) {
        (false, false) => {
            return refuse(format!(
                "allows purging messages, which only a broker that prunes may do: turn \
                 pruning on (--retain) on every broker of this stream, or forbid purges for \
                 good: nats stream edit {stream} --deny-purge"
            ));
        }
        (true, true) => {
            return refuse(
                "forbids purges, which pruning removes versions with, and NATS never lifts \
                 that setting: keep this stream without pruning, or prune into a new stream \
                 (--nats-stream)"
                    .into(),
            );
        }
        (true, false) if flag("allow_rollup_hdrs") => {
            return refuse(
                "allows rollup headers, with which a publish purges versions: set \
                 allow_rollup_hdrs to false on it"
                    .into(),
            );
        }
        _ => {}
    }
    if int("max_age") > 0 || int("max_msgs_per_subject") > 0 {
        return refuse(format!(
            "has a max_age or max_msgs_per_subject limit, which deletes versions: \
             nats stream edit {stream} --max-age 0 --max-msgs-per-subject -1"
        ));
    }
    if (int("max_msgs") > 0 || int("max_bytes") > 0)
        && config["discard"].as_str().unwrap_or("old") != "new"
    {
        return refuse(format!(
            "has a max_msgs or max_bytes limit with discard policy `old`, which deletes the \
             oldest versions: nats stream edit {stream} --discard new (or remove the limit)"
        ));
    }
    if !flag("allow_direct") || !flag("allow_atomic") {
        return refuse(
            "does not allow direct gets and atomic batches, which the broker reads and writes \
             with: set allow_direct and allow_atomic to true on it"
                .into(),
        );
    }
    if config["storage"].as_str() == Some("memory") {
        tracing::warn!(stream, "the stream is kept in memory: versions do not survive a restart");
    }
    let window = Duration::from_nanos(config["duplicate_window"].as_u64().unwrap_or(0));
    if window != options.duplicate_window {
        tracing::warn!(
            stream,
            stream_window = ?window,
            configured = ?options.duplicate_window,
            "the stream's duplicate_window is the idempotency window, and it differs from the one \
             configured: the stream's applies"
        );
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Value {
        json!({
            "name": "broker", "subjects": ["broker.>"], "retention": "limits", "storage": "file",
            "num_replicas": 3, "discard": "new", "max_msgs": -1, "max_bytes": -1, "max_age": 0,
            "max_msgs_per_subject": -1, "duplicate_window": 120_000_000_000u64,
            "deny_delete": true, "deny_purge": true, "allow_direct": true, "allow_atomic": true,
            "metadata": { DATABASE_ID: "6a2f41a3-c54c-fce8-32d2-0324e1c32e22" },
        })
    }

    fn check_refused(change: impl FnOnce(&mut Value), expected: &str) {
        let mut config = good();
        change(&mut config);
        match check(&config, &NatsOptions::default()) {
            Err(error) => assert!(error.to_string().contains(expected), "{error}"),
            Ok(_) => panic!("accepted a stream that should be refused for {expected:?}"),
        }
    }

    #[test]
    fn a_broker_stream_is_accepted() {
        let id = check(&good(), &NatsOptions::default()).expect("a good stream");
        assert_eq!(id.to_string(), "6a2f41a3-c54c-fce8-32d2-0324e1c32e22");
    }

    #[test]
    fn streams_that_could_lose_versions_are_refused() {
        check_refused(|c| c["num_replicas"] = json!(1), "--nats-replicas 1");
        check_refused(|c| c["deny_delete"] = json!(false), "--deny-delete");
        check_refused(|c| c["deny_purge"] = json!(false), "--deny-purge");
        check_refused(|c| c["deny_purge"] = json!(false), "--retain");
        check_refused(|c| c["max_age"] = json!(1_000_000_000), "max_age");
        check_refused(|c| c["max_msgs_per_subject"] = json!(1), "max_msgs_per_subject");
        check_refused(
            |c| {
                c["max_bytes"] = json!(1_000_000);
                c["discard"] = json!("old");
            },
            "--discard new",
        );
        check_refused(|c| c["retention"] = json!("workqueue"), "retention");
        check_refused(|c| c["allow_atomic"] = json!(false), "allow_atomic");
        check_refused(|c| c["subjects"] = json!(["broker.>", "other"]), "subjects");
        check_refused(|c| c["metadata"] = json!({}), "not created by a broker");
    }

    #[test]
    fn pruning_needs_a_stream_that_allows_purges_and_nothing_more() {
        let pruning = NatsOptions { prune: true, ..NatsOptions::default() };
        let check_pruning = |change: fn(&mut Value), expected: Option<&str>| {
            let mut config = good();
            change(&mut config);
            match (check(&config, &pruning), expected) {
                (Ok(_), None) => {}
                (Err(error), Some(expected)) => {
                    assert!(error.to_string().contains(expected), "{error}");
                }
                (outcome, _) => panic!("{config}: {outcome:?}, expected {expected:?}"),
            }
        };
        check_pruning(|c| c["deny_purge"] = json!(false), None);
        check_pruning(|_| {}, Some("NATS never lifts"));
        check_pruning(
            |c| {
                c["deny_purge"] = json!(false);
                c["allow_rollup_hdrs"] = json!(true);
            },
            Some("rollup"),
        );
        check_pruning(
            |c| {
                c["deny_purge"] = json!(false);
                c["deny_delete"] = json!(false);
            },
            Some("--deny-delete"),
        );
        check_pruning(
            |c| {
                c["deny_purge"] = json!(false);
                c["max_age"] = json!(1_000_000_000);
            },
            Some("max_age"),
        );
    }

    #[test]
    fn a_leader_needs_to_hear_from_a_quorum() {
        let follower = |current: bool, active_ms: u64| {
            let active = active_ms * 1_000_000;
            json!({ "name": "n", "current": current, "active": active })
        };
        let check = |replicas: Vec<Value>, writable: bool| {
            let cluster = json!({ "leader": "n0", "replicas": replicas });
            assert_eq!(quorum(&cluster, "s").is_ok(), writable, "{cluster}");
        };
        check(vec![follower(true, 5), follower(true, 7)], true);
        check(vec![follower(true, 5), follower(false, 7)], true);
        check(vec![follower(true, 9_000), follower(true, 9_000)], false);
        check(vec![follower(false, 5), follower(false, 7)], false);
        check(vec![], true);
        assert!(quorum(&json!({ "replicas": [] }), "s").is_err(), "no leader");
        assert!(quorum(&Value::Null, "s").is_ok(), "a single server");
    }

    #[test]
    fn a_size_limit_with_discard_new_is_a_quota() {
        let mut config = good();
        config["max_bytes"] = json!(1_000_000);
        assert!(check(&config, &NatsOptions::default()).is_ok(), "appends fail as full instead");
    }
}
