//! Group commit of creates against the real databases: one transaction for
//! a batch, each item answered on its own — a request id used before (or
//! earlier in the batch) answers with its deployment, and an item that fails
//! fails only itself.

mod common;

use common::{Backend, TestDatabase, new_deployment};
use eucora_services::domain::{Deployment, NewEvent};
use eucora_services::store::{CreateOutcome, NewCreate, Store, StoreConfig};
use uuid::Uuid;

on_every_backend!(a_batch_answers_each_create_on_its_own, a_large_batch_is_stored_whole_and_in_order);

fn item<'a>(request_id: &'a str, (deployment, events): &'a (Deployment, Vec<NewEvent>)) -> NewCreate<'a> {
    NewCreate { request_id, fingerprint: request_id, deployment, events }
}

async fn a_batch_answers_each_create_on_its_own(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = Store::connect(&StoreConfig::new(&database.url)).await.unwrap();
    store.migrate().await.unwrap();
    let taken = new_deployment("taken");
    let CreateOutcome::Created(existing) = store.create_deployments(&[item("taken", &taken)]).await.remove(0).unwrap()
    else {
        panic!("a first create creates");
    };

    let (a, d, again) = (new_deployment("a"), new_deployment("d"), new_deployment("d-again"));
    // A new request whose deployment id is already stored: the insert fails.
    let mut clash = new_deployment("clash");
    clash.0.id = existing.id;
    let batch = [item("a", &a), item("taken", &taken), item("clash", &clash), item("d", &d), item("d", &again)];
    let outcomes = store.create_deployments(&batch).await;

    assert!(matches!(&outcomes[0], Ok(CreateOutcome::Created(created)) if created.id == a.0.id), "{:?}", outcomes[0]);
    assert!(
        matches!(&outcomes[1], Ok(CreateOutcome::Existing { deployment, .. }) if deployment.id == existing.id),
        "{:?}",
        outcomes[1]
    );
    assert!(outcomes[2].is_err(), "the clashing item fails: {:?}", outcomes[2]);
    assert!(matches!(&outcomes[3], Ok(CreateOutcome::Created(created)) if created.id == d.0.id), "{:?}", outcomes[3]);
    assert!(
        matches!(&outcomes[4], Ok(CreateOutcome::Existing { deployment, .. }) if deployment.id == d.0.id),
        "the same request id later in the batch answers with the first: {:?}",
        outcomes[4]
    );

    // Exactly the created deployments' events were stored, in order, with no gap.
    let events = store.list_events(None, None, 100).await.unwrap().items;
    let owners: Vec<Uuid> = events.iter().map(|event| event.event.deployment_id).collect();
    let expected: Vec<Uuid> = [&taken, &a, &d]
        .iter()
        .flat_map(|(deployment, events)| std::iter::repeat_n(deployment.id, events.len()))
        .collect();
    assert_eq!(owners, expected);
    assert!(events.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert!(store.get_deployment(clash.0.id).await.is_ok_and(|stored| stored.app_name == "taken"));
}

/// 71 creates: multi-row statements of 32, 32, 4, 2 and 1 rows; one request
/// id used again in the same statement, one in a later one.
async fn a_large_batch_is_stored_whole_and_in_order(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = Store::connect(&StoreConfig::new(&database.url)).await.unwrap();
    store.migrate().await.unwrap();
    let creates: Vec<(String, (Deployment, Vec<NewEvent>))> =
        (0..71).map(|n| (format!("request-{}", reused(n).unwrap_or(n)), new_deployment(&format!("app-{n}")))).collect();
    let batch: Vec<NewCreate<'_>> = creates.iter().map(|(request_id, created)| item(request_id, created)).collect();
    let outcomes = store.create_deployments(&batch).await;

    let mut expected_events = Vec::new();
    for (n, ((_, (deployment, events)), outcome)) in creates.iter().zip(&outcomes).enumerate() {
        match outcome {
            Ok(CreateOutcome::Created(created)) => {
                assert_eq!(reused(n), None, "a request id used earlier in the batch does not create");
                assert_eq!(created.id, deployment.id);
                assert_eq!(
                    &store.get_deployment(deployment.id).await.unwrap(),
                    deployment,
                    "stored whole, rings included"
                );
                expected_events.extend(events.iter().map(|event| (event.deployment_id, event.kind)));
            }
            Ok(CreateOutcome::Existing { deployment: existing, .. }) => {
                let first = reused(n).expect("only a reused request id finds a deployment");
                assert_eq!(existing.id, creates[first].1.0.id);
            }
            Err(err) => panic!("create {n} failed: {err}"),
        }
    }
    let events = store.list_events(None, None, 1000).await.unwrap().items;
    let stored: Vec<_> = events.iter().map(|event| (event.event.deployment_id, event.event.kind)).collect();
    assert_eq!(stored, expected_events, "every event once, in the order of the batch");
    assert!(events.windows(2).all(|pair| pair[0].seq < pair[1].seq));
}

/// The earlier create whose request id create `n` of the large batch uses again.
fn reused(n: usize) -> Option<usize> {
    match n {
        5 => Some(3),
        40 => Some(7),
        _ => None,
    }
}
