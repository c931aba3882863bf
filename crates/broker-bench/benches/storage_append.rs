//! Criterion micro-benchmarks of the storage append path: `RedbStorage` (a durable commit per
//! append, so this measures the disk's fsync as much as redb) and `MemoryStorage`, in batches of
//! 1, 100 and 1,000 versions of 100 bytes.

use std::hint::black_box;
use std::time::Duration;

use broker_storage::{MemoryStorage, NewVersion, Storage};
use broker_storage_redb::RedbStorage;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const DATA: &str = r#"{"p":1,"s":1,"t":1234567890123,"x":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

fn batch(len: usize) -> Vec<NewVersion> {
    (0..len).map(|n| NewVersion::new(format!("e{:03}", n % 100), 1, DATA)).collect()
}

fn appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let redb = runtime.block_on(RedbStorage::open(dir.path().join("bench.redb"))).expect("open");

    let mut group = c.benchmark_group("append");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    for len in [1, 100, 1000] {
        group.throughput(Throughput::Elements(len as u64));
        group.bench_function(format!("redb/{len}"), |b| {
            b.iter_batched(
                || batch(len),
                |batch| black_box(runtime.block_on(redb.append(batch)).expect("append")),
                BatchSize::SmallInput,
            )
        });
        // A fresh store each time, so that the measure does not drift as the store grows.
        group.bench_function(format!("memory/{len}"), |b| {
            b.iter_batched(
                || (MemoryStorage::new(), batch(len)),
                |(store, batch)| {
                    black_box(runtime.block_on(store.append(batch)).expect("append"));
                    store
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    runtime.block_on(redb.close()).expect("close");
}

criterion_group!(benches, appends);
criterion_main!(benches);
