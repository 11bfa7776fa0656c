//! Coordination through the machine's Redis, in process: breaker transitions
//! racing from several replicas all apply (none is lost to a concurrent
//! write), a Redis that goes away leaves the replica working on its local
//! state, and a URL fred cannot read is refused up front.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::proxy::CutProxy;
use eucora_otel::Catalog;
use eucora_services::coord::Coordination;
use eucora_services::coord::redis::Redis;
use eucora_services::domain::breaker::{BreakerConfig, BreakerState};
use eucora_services::store::{Store, StoreConfig};

fn catalog() -> Catalog {
    Catalog::new(&opentelemetry::global::meter("coordination-test"))
}

/// A replica's coordination through Redis at `addr`, once it is seen up.
async fn replica(addr: &str, prefix: &str) -> Arc<Coordination> {
    let redis = Redis::connect(&format!("redis://{addr}"), prefix).unwrap();
    let coordination = Arc::new(Coordination::shared(eucora_services::coord::replica_id(), redis, catalog()));
    // The store only carries commit notices, of which these tests make none.
    let store = Store::connect(&StoreConfig::new("sqlite::memory:")).await.unwrap();
    let (health, _) = tonic_health::server::health_reporter();
    tokio::spawn(coordination.clone().run(Arc::new(store), health, tokio_util::sync::CancellationToken::new()));
    common::eventually("Redis to be seen up", Duration::from_secs(5), || {
        let coordination = coordination.clone();
        async move { coordination.redis_up().then_some(()) }
    })
    .await;
    coordination
}

fn prefix() -> String {
    format!("eucora-test-{}:", uuid::Uuid::new_v4().simple())
}

const CONFIG: BreakerConfig = BreakerConfig { fail_max: 1000, reset_timeout: Duration::from_secs(60) };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_breaker_transitions_from_three_replicas_all_apply() {
    let prefix = prefix();
    let replicas = [
        replica("127.0.0.1:6379", &prefix).await,
        replica("127.0.0.1:6379", &prefix).await,
        replica("127.0.0.1:6379", &prefix).await,
    ];
    let failures = (0..60).map(|i| {
        let replica = replicas[i % 3].clone();
        async move {
            let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
            replica.update_breaker("contended", CONFIG, |breaker| breaker.on_failure(now, "down")).await;
        }
    });
    futures_util::future::join_all(failures).await;
    for replica in &replicas {
        assert_eq!(replica.breaker("contended", CONFIG).await.consecutive_failures(), 60, "no failure lost");
    }
    // A reset through one is a reset for all.
    replicas[1].update_breaker("contended", CONFIG, |breaker| breaker.reset()).await;
    assert_eq!(replicas[2].breaker("contended", CONFIG).await.consecutive_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_replica_keeps_its_own_breakers_and_returns_to_the_shared_ones() {
    let prefix = prefix();
    let proxy = CutProxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let cut_off = replica(&proxy.addr.to_string(), &prefix).await;
    let other = replica("127.0.0.1:6379", &prefix).await;
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let open = BreakerConfig { fail_max: 1, ..CONFIG };
    other.update_breaker("shared", open, |breaker| breaker.on_failure(now, "down")).await;
    assert_eq!(cut_off.breaker("shared", open).await.state(now), BreakerState::Open, "shared while connected");

    proxy.cut();
    let started = std::time::Instant::now();
    // Within the command timeout, a transition applies to the local copy.
    cut_off.update_breaker("shared", open, |breaker| breaker.reset()).await;
    assert!(started.elapsed() < Duration::from_secs(2), "Redis being gone costs at most a timeout");
    assert!(!cut_off.redis_up());
    assert_eq!(cut_off.breaker("shared", open).await.state(now), BreakerState::Closed, "its own state meanwhile");
    assert_eq!(other.breaker("shared", open).await.state(now), BreakerState::Open, "which the others do not share");

    proxy.restore();
    common::eventually("the cut-off replica to be back on Redis", Duration::from_secs(10), || {
        let cut_off = cut_off.clone();
        async move { cut_off.redis_up().then_some(()) }
    })
    .await;
    assert_eq!(cut_off.breaker("shared", open).await.state(now), BreakerState::Open, "shared again");
}

#[tokio::test]
async fn a_url_fred_cannot_read_is_refused() {
    let err = Redis::connect("http://127.0.0.1:6379", "eucora:").err().expect("not a Redis URL");
    assert!(err.to_string().starts_with("--redis-url: "), "{err}");
}
