//! Live-state conformance: one suite of checks of the [`LiveState`] contract, run against
//! the in-process state and Redis. Every check gets a fresh live state (a new key prefix on
//! Redis); each runs as `<check>_memory` and `<check>_redis`.

use std::{future::Future, sync::Arc};

use iparking::{
    live::{LiveState, rebuild_occupancy},
    registry, seed,
};
use iparking_tests::{Db, Live, TestDb, live_state};
use rand::Rng;

/// Runs `check` on a fresh live state of kind `live`.
async fn with_live<F, Fut>(live: Live, check: F)
where
    F: FnOnce(Arc<dyn LiveState>) -> Fut,
    Fut: Future<Output = ()>,
{
    let state = live_state(live, None).await;
    let expected = match live {
        Live::Memory => "memory",
        Live::Redis => "redis",
    };
    assert_eq!(state.backend(), expected);
    state.ping().await.expect("ping");
    check(state).await;
}

/// `conformance!(check_fn => name_memory, name_redis;)` makes one test per live state.
macro_rules! conformance {
    ($($check:ident => $memory:ident, $redis:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $memory() {
            with_live(Live::Memory, $check).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $redis() {
            with_live(Live::Redis, $check).await;
        }
    )*};
}

conformance! {
    check_occupancy_reads => occupancy_reads_memory, occupancy_reads_redis;
    check_occupy_and_release => occupy_and_release_memory, occupy_and_release_redis;
    check_zero_capacity => zero_capacity_memory, zero_capacity_redis;
    check_concurrent_occupy => concurrent_occupy_memory, concurrent_occupy_redis;
    check_reset_occupancy => reset_occupancy_memory, reset_occupancy_redis;
    check_rebuild_from_store => rebuild_from_store_memory, rebuild_from_store_redis;
}

async fn occ(live: &Arc<dyn LiveState>, ids: &[i64]) -> Vec<i64> {
    live.occupancy(ids).await.expect("occupancy")
}

async fn take(live: &Arc<dyn LiveState>, id: i64, capacity: i64) -> bool {
    live.try_occupy(id, capacity).await.expect("try_occupy")
}

async fn give(live: &Arc<dyn LiveState>, id: i64) {
    live.release(id).await.expect("release");
}

fn unique_prefix() -> String {
    format!("t:conf{:016x}:", rand::rng().random::<u64>())
}

// ---- checks ------------------------------------------------------------------------------

async fn check_occupancy_reads(live: Arc<dyn LiveState>) {
    assert_eq!(occ(&live, &[]).await, Vec::<i64>::new());
    assert_eq!(occ(&live, &[1, 2, 3]).await, [0, 0, 0], "unknown points are free");

    for _ in 0..2 {
        assert!(take(&live, 10, 5).await);
    }
    assert!(take(&live, 20, 5).await);
    // In the order asked, duplicates and unknown ids included.
    assert_eq!(occ(&live, &[20, 99, 10, 20]).await, [1, 0, 2, 1]);
    assert_eq!(occ(&live, &[10]).await, [2]);
    assert_eq!(occ(&live, &[99]).await, [0]);
    assert_eq!(occ(&live, &[]).await, Vec::<i64>::new());
}

async fn check_occupy_and_release(live: Arc<dyn LiveState>) {
    for i in 1..=3 {
        assert!(take(&live, 7, 3).await, "space {i} of 3");
        assert_eq!(occ(&live, &[7]).await, [i]);
    }
    assert!(!take(&live, 7, 3).await, "a full point took a fourth vehicle");
    assert!(!take(&live, 7, 3).await);
    assert_eq!(occ(&live, &[7]).await, [3], "a refused try_occupy changed the count");

    // A lower capacity (the city shrank the point) refuses without changing the count.
    assert!(!take(&live, 7, 2).await);
    assert_eq!(occ(&live, &[7]).await, [3]);
    // A higher one takes more.
    assert!(take(&live, 7, 4).await);
    assert_eq!(occ(&live, &[7]).await, [4]);

    give(&live, 7).await;
    assert_eq!(occ(&live, &[7]).await, [3]);
    assert!(!take(&live, 7, 3).await);
    give(&live, 7).await;
    assert!(take(&live, 7, 3).await, "a released space is free again");
    assert_eq!(occ(&live, &[7]).await, [3]);

    // Never below zero.
    for _ in 0..5 {
        give(&live, 7).await;
    }
    assert_eq!(occ(&live, &[7]).await, [0]);
    assert!(take(&live, 7, 3).await);
    assert_eq!(occ(&live, &[7]).await, [1], "releases below zero were remembered");

    // Releasing a point never occupied is harmless and leaves it at zero.
    give(&live, 8).await;
    give(&live, 8).await;
    assert_eq!(occ(&live, &[8]).await, [0]);
    assert!(take(&live, 8, 1).await);
    assert_eq!(occ(&live, &[8, 7]).await, [1, 1]);

    // Other points are independent.
    assert!(take(&live, 9, 1).await);
    assert!(!take(&live, 9, 1).await);
    assert_eq!(occ(&live, &[7, 8, 9]).await, [1, 1, 1]);
}

async fn check_zero_capacity(live: Arc<dyn LiveState>) {
    for _ in 0..3 {
        assert!(!take(&live, 5, 0).await, "a point with no space took a vehicle");
    }
    assert_eq!(occ(&live, &[5]).await, [0]);
    give(&live, 5).await;
    assert_eq!(occ(&live, &[5]).await, [0]);
    // Occupied spaces above a capacity cut to zero stay refused.
    assert!(take(&live, 6, 2).await);
    assert!(!take(&live, 6, 0).await);
    assert_eq!(occ(&live, &[6]).await, [1]);
}

async fn check_concurrent_occupy(live: Arc<dyn LiveState>) {
    const TASKS: usize = 64;
    const CAPACITY: i64 = 5;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let live = Arc::clone(&live);
            tokio::spawn(async move { live.try_occupy(42, CAPACITY).await.expect("try_occupy") })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.expect("task") {
            won += 1;
        }
    }
    assert_eq!(won, CAPACITY, "exactly the capacity may win the race");
    assert_eq!(occ(&live, &[42]).await, [CAPACITY]);

    // As many concurrent releases: the count ends at zero, not below.
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let live = Arc::clone(&live);
            tokio::spawn(async move { live.release(42).await.expect("release") })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(occ(&live, &[42]).await, [0]);
    assert!(take(&live, 42, CAPACITY).await);
    assert_eq!(occ(&live, &[42]).await, [1]);
}

async fn check_reset_occupancy(live: Arc<dyn LiveState>) {
    for id in [1, 2, 3] {
        assert!(take(&live, id, 10).await);
    }
    assert!(take(&live, 1, 10).await);

    live.reset_occupancy(&[(2, 7), (4, 1)]).await.expect("reset");
    assert_eq!(occ(&live, &[1, 2, 3, 4]).await, [0, 7, 0, 1], "ids not listed must become 0");
    // Idempotent.
    live.reset_occupancy(&[(2, 7), (4, 1)]).await.expect("reset again");
    assert_eq!(occ(&live, &[1, 2, 3, 4]).await, [0, 7, 0, 1]);

    // The counters keep working from the reset values.
    assert!(take(&live, 2, 8).await);
    assert!(!take(&live, 2, 8).await);
    assert!(take(&live, 1, 1).await);
    give(&live, 4).await;
    assert_eq!(occ(&live, &[1, 2, 3, 4]).await, [1, 8, 0, 0]);

    // An empty reset frees everything, twice.
    live.reset_occupancy(&[]).await.expect("empty reset");
    assert_eq!(occ(&live, &[1, 2, 3, 4]).await, [0, 0, 0, 0]);
    live.reset_occupancy(&[]).await.expect("empty reset again");
    assert_eq!(occ(&live, &[1, 2, 3, 4]).await, [0, 0, 0, 0]);

    // Many points at once (more than one write chunk on Redis).
    let counts: Vec<(i64, i64)> = (1..=2_500).map(|id| (id, id % 17)).collect();
    live.reset_occupancy(&counts).await.expect("big reset");
    let ids: Vec<i64> = counts.iter().map(|(id, _)| *id).collect();
    let want: Vec<i64> = counts.iter().map(|(_, n)| *n).collect();
    assert_eq!(occ(&live, &ids).await, want);
    live.reset_occupancy(&counts[..10]).await.expect("small reset");
    let mut want_small = want.clone();
    want_small[10..].iter_mut().for_each(|n| *n = 0);
    assert_eq!(occ(&live, &ids).await, want_small, "a smaller reset left old counters behind");
}

async fn check_rebuild_from_store(live: Arc<dyn LiveState>) {
    let db = TestDb::create(Db::Sqlite).await;
    let store = db.store().await;
    registry::load_seed(store.as_ref(), seed::hanoi_pilot(), chrono::Utc::now()).await.expect("seed");
    let points = store.points().await.expect("points");
    let ids: Vec<i64> = points.iter().map(|p| p.id).collect();

    // Stale counters: some points look occupied, one is full.
    for p in &points[..5] {
        assert!(take(&live, p.id, i64::from(p.capacity)).await);
    }
    let full = &points[5];
    for _ in 0..full.capacity {
        assert!(take(&live, full.id, i64::from(full.capacity)).await);
    }
    assert!(!take(&live, full.id, i64::from(full.capacity)).await);
    assert!(occ(&live, &ids).await.iter().sum::<i64>() > 0);

    // No vehicle is recorded as parked in a fresh store: every counter goes back to 0.
    let durable = store.occupied_by_point().await.expect("occupied_by_point");
    let rebuilt = rebuild_occupancy(store.as_ref(), live.as_ref()).await.expect("rebuild");
    assert_eq!(rebuilt, durable.len());
    assert_eq!(occ(&live, &ids).await, vec![0; ids.len()], "rebuild left stale counters");
    assert!(take(&live, full.id, i64::from(full.capacity)).await, "the full point is free again");

    // Rebuilding twice is the same as once.
    rebuild_occupancy(store.as_ref(), live.as_ref()).await.expect("rebuild again");
    assert_eq!(occ(&live, &ids).await, vec![0; ids.len()]);
}

// ---- Redis only: sharing between nodes ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shared_prefix_is_one_state() {
    let prefix = unique_prefix();
    let a = live_state(Live::Redis, Some(&prefix)).await;
    let b = live_state(Live::Redis, Some(&prefix)).await;

    assert!(take(&a, 1, 2).await);
    assert_eq!(occ(&b, &[1]).await, [1], "b does not see a's write");
    assert!(take(&b, 1, 2).await);
    assert_eq!(occ(&a, &[1]).await, [2], "a does not see b's write");
    assert!(!take(&a, 1, 2).await, "a ignored b's occupied space");
    assert!(!take(&b, 1, 2).await);

    give(&a, 1).await;
    assert_eq!(occ(&b, &[1]).await, [1]);

    b.reset_occupancy(&[(5, 3)]).await.expect("reset");
    assert_eq!(occ(&a, &[1, 5]).await, [0, 3], "a does not see b's reset");

    // A race split over both nodes.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let node = Arc::clone(if i % 2 == 0 { &a } else { &b });
            tokio::spawn(async move { node.try_occupy(77, 5).await.expect("try_occupy") })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.expect("task") {
            won += 1;
        }
    }
    assert_eq!(won, 5, "two nodes together overbooked the point");
    assert_eq!(occ(&a, &[77]).await, [5]);
    assert_eq!(occ(&b, &[77]).await, [5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_different_prefixes_are_isolated() {
    let prefix_a = unique_prefix();
    let prefix_c = unique_prefix();
    assert_ne!(prefix_a, prefix_c);
    let a = live_state(Live::Redis, Some(&prefix_a)).await;
    let c = live_state(Live::Redis, Some(&prefix_c)).await;

    for _ in 0..3 {
        assert!(take(&a, 5, 3).await);
    }
    assert!(!take(&a, 5, 3).await);
    assert_eq!(occ(&c, &[5]).await, [0], "c sees a's counters");
    assert!(take(&c, 5, 1).await, "c is limited by a's counters");
    assert_eq!(occ(&a, &[5]).await, [3]);

    give(&c, 5).await;
    give(&c, 5).await;
    assert_eq!(occ(&a, &[5]).await, [3], "c's release reached a");
    c.reset_occupancy(&[]).await.expect("reset c");
    assert_eq!(occ(&a, &[5]).await, [3], "c's reset wiped a");
    a.reset_occupancy(&[(6, 2)]).await.expect("reset a");
    assert_eq!(occ(&c, &[5, 6]).await, [0, 0], "a's reset reached c");
    assert_eq!(occ(&a, &[5, 6]).await, [0, 2]);
}
