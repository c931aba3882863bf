//! [`Shared`]: the parts of the engine that the [`Broker`](crate::Broker) handle and every
//! [`Subscription`](crate::Subscription) hold together.
//!
//! It sits below both, so that a subscription reaches storage, state and metrics without knowing
//! the handle that created it.

use std::sync::{Arc, Mutex};

use broker_storage::Uuid;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::erased::DynStorage;
use crate::horizons::Horizons;
use crate::item::Insert;
use crate::metrics::Metrics;
use crate::state::State;
use crate::storage_health::StorageHealth;
use crate::writer::WriterThread;

/// One broker's engine, behind an `Arc`: the handle's clones and every subscription share it.
pub(crate) struct Shared {
    pub(crate) storage: Arc<dyn DynStorage>,
    pub(crate) state: Arc<State>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) database_id: Uuid,
    pub(crate) config: Config,
    /// The writer's queue; `None` once the broker is closing.
    pub(crate) inserts: Mutex<Option<mpsc::Sender<Insert>>>,
    /// The writer's thread; taken by the first `close`, which waits for it.
    pub(crate) writer: Mutex<Option<WriterThread>>,
    /// The feed task, and the signal that it has answered everything the writer committed;
    /// taken by the first `close`, which waits for both.
    pub(crate) feed: Mutex<Option<(JoinHandle<()>, oneshot::Receiver<()>)>>,
    /// Whether the storage takes writes.
    pub(crate) health: Arc<StorageHealth>,
    /// The task that watches a failing storage for its recovery; aborted by `close`.
    pub(crate) watch: JoinHandle<()>,
    /// How far back each event's history reaches.
    pub(crate) horizons: Arc<Horizons>,
    /// The task that prunes by the retention rules; aborted by `close`.
    pub(crate) pruner: JoinHandle<()>,
}
