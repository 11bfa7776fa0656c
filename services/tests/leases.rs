//! Leases of background duties against the real databases: one holder at a
//! time, kept by renewing, taken over once lapsed with a greater token, and
//! a former holder's writes refused by the fencing check in their own
//! transaction.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Backend, TestDatabase};
use eucora_services::domain::connector::Health;
use eucora_services::store::StoreError;

on_every_backend!(a_lease_has_one_holder_and_a_former_holder_cannot_write);

const PERIOD: Duration = Duration::from_secs(10);

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

async fn a_lease_has_one_holder_and_a_former_holder_cannot_write(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.migrated_store().await;
    let acquire = |holder: &'static str, held: Option<i64>, seconds: i64| {
        let store = &store;
        async move { store.acquire_lease("controller", holder, held, at(seconds), PERIOD).await.unwrap() }
    };

    let a = acquire("a", None, 0).await.expect("a free lease is taken");
    assert_eq!(a.token, 1);
    assert!(acquire("b", None, 5).await.is_none(), "held by a");
    assert_eq!(acquire("a", Some(1), 5).await.map(|f| f.token), Some(1), "renewing keeps the token");
    assert!(acquire("b", None, 12).await.is_none(), "renewed until 15");
    let b = acquire("b", None, 15).await.expect("lapsed: taken over");
    assert_eq!(b.token, 2);
    assert!(acquire("a", Some(1), 16).await.is_none(), "a lost it");

    // a, paused through the takeover, comes back and writes: refused.
    let health = Health { healthy: false, last_error: Some("down".into()), checked_at: at(16) };
    let stale = store.set_connector_health("simulator-intune", &health, Some(&a)).await;
    assert!(matches!(stale, Err(StoreError::Fenced { token: 1, .. })), "{stale:?}");
    store.set_connector_health("simulator-intune", &health, Some(&b)).await.expect("the holder writes");

    // Given up on shutdown: the next replica need not wait for the lapse.
    store.release_lease(&b).await.unwrap();
    assert_eq!(acquire("c", None, 17).await.map(|f| f.token), Some(3));
}
