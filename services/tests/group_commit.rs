//! Group commit of creates against the real databases: one transaction for
//! a batch, each item answered on its own — a request id used before (or
//! earlier in the batch) answers with its deployment, and an item that fails
//! fails only itself; and a flood of concurrent creates through the server,
//! whose batches are scored while the one before commits.

mod common;

use std::collections::{HashMap, HashSet};

use common::{Backend, TestDatabase, create_request, list_all_events, new_create, new_deployment, start_server};
use eucora::v1 as pb;
use eucora_services::domain::{Deployment, NewEvent};
use eucora_services::store::{CreateOutcome, NewCreate};
use uuid::Uuid;

on_every_backend!(
    a_batch_answers_each_create_on_its_own,
    a_large_batch_is_stored_whole_and_in_order,
    a_flood_of_creates_reusing_request_ids_stores_each_once_with_its_events_in_order
);

async fn a_batch_answers_each_create_on_its_own(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.migrated_store().await;
    let taken = new_deployment("taken");
    let CreateOutcome::Created(existing) =
        store.create_deployments(&[new_create("taken", &taken)]).await.remove(0).unwrap()
    else {
        panic!("a first create creates");
    };

    let (a, d, again) = (new_deployment("a"), new_deployment("d"), new_deployment("d-again"));
    // A new request whose deployment id is already stored: the insert fails.
    let mut clash = new_deployment("clash");
    clash.0.id = existing.id;
    let batch = [
        new_create("a", &a),
        new_create("taken", &taken),
        new_create("clash", &clash),
        new_create("d", &d),
        new_create("d", &again),
    ];
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
    let store = database.migrated_store().await;
    let creates: Vec<(String, (Deployment, Vec<NewEvent>))> =
        (0..71).map(|n| (format!("request-{}", reused(n).unwrap_or(n)), new_deployment(&format!("app-{n}")))).collect();
    let batch: Vec<NewCreate<'_>> =
        creates.iter().map(|(request_id, created)| new_create(request_id, created)).collect();
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

/// 240 creates at once, each of 80 request ids sent three times: batches
/// overlap (one scored while another commits), and a request id's copies land
/// in the same batch or in different ones.
async fn a_flood_of_creates_reusing_request_ids_stores_each_once_with_its_events_in_order(backend: Backend) {
    const IDS: usize = 80;
    let server = start_server(backend).await;
    let calls: Vec<_> = (0..IDS * 3)
        .map(|n| {
            let mut client = server.deployments();
            let request = create_request(&format!("flood-{}", n % IDS), &format!("app-{}", n % IDS % 7), 10);
            tokio::spawn(async move { (n % IDS, client.create_deployment(request).await) })
        })
        .collect();
    let mut answered: HashMap<usize, HashSet<String>> = HashMap::new();
    for call in calls {
        let (request, answer) = call.await.unwrap();
        let deployment = answer.expect("every create is answered with its deployment").into_inner().deployment.unwrap();
        answered.entry(request).or_default().insert(deployment.id);
    }
    assert_eq!(answered.len(), IDS);
    assert!(answered.values().all(|ids| ids.len() == 1), "one deployment per request id: {answered:?}");
    let created: HashSet<String> = answered.into_values().flatten().collect();

    let events = list_all_events(&mut server.deployments(), 0).await;
    assert!(events.windows(2).all(|pair| pair[0].sequence < pair[1].sequence));
    let mut made = HashMap::<&str, usize>::new();
    for event in events.iter().filter(|event| event.kind() == pb::DeploymentEventKind::Created) {
        *made.entry(event.deployment_id.as_str()).or_default() += 1;
    }
    assert_eq!(made.len(), IDS, "a created event for each deployment and no other");
    assert!(made.iter().all(|(id, n)| *n == 1 && created.contains(*id)), "{made:?}");
    server.stop().await;
}
