//! Writer threads: the one place where a store may block in an `async` method.
//!
//! An engine appends from one writer. When that writer is a thread of its own, which drives its
//! futures with `tokio::runtime::Handle::block_on` and does nothing else, blocking it stalls no
//! other work. A store whose append is blocking work (a record written and synced) may then do
//! that work on the calling thread. Handing it to Tokio's blocking pool instead costs two
//! wake-ups per append, one to start a blocking thread and one to resume the writer, and while
//! the runtime's workers are busy each of them waits for a CPU.
//!
//! Anywhere else, on a runtime's worker, blocking would stall every task of that worker: a store
//! must move the work off the calling thread there, as [`Storage`](crate::Storage) says.

use std::cell::Cell;

thread_local! {
    static WRITER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as a writer thread for the rest of its life: a thread of its own that
/// only drives an engine's appends, with `Handle::block_on`.
pub fn mark_writer_thread() {
    WRITER.set(true);
}

/// Whether the calling thread was marked with [`mark_writer_thread`]: a store may block it.
pub fn on_writer_thread() -> bool {
    WRITER.get()
}

/// Runs the blocking `work` where a store may: on the calling thread if it is a writer thread,
/// on Tokio's blocking pool otherwise. The error is the pool's, for `work` that panicked there.
///
/// # Panics
///
/// Off a writer thread, outside a Tokio runtime.
pub async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if on_writer_thread() {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marked_thread_is_a_writer_thread() {
        let marked = std::thread::spawn(|| {
            let before = on_writer_thread();
            mark_writer_thread();
            (before, on_writer_thread())
        });
        assert_eq!(marked.join().expect("the thread ends"), (false, true));
        assert!(!on_writer_thread(), "another thread is not marked by it");
    }

    #[test]
    fn blocking_work_stays_on_a_writer_thread_and_leaves_any_other() {
        let runtime = tokio::runtime::Runtime::new().expect("build a runtime");
        let handle = runtime.handle().clone();
        let here = || std::thread::current().id();
        let writer = std::thread::spawn(move || {
            mark_writer_thread();
            let ran_on = handle.block_on(run_blocking(here)).expect("no panic");
            ran_on == here()
        });
        assert!(writer.join().expect("the thread ends"), "run on the writer thread itself");
        let ran_on = runtime.block_on(run_blocking(here)).expect("no panic");
        assert_ne!(ran_on, here(), "run on the blocking pool");
    }
}
