//! kill -9 of a real `eucora serve` under create load, three times, then a
//! restart on the same database: every create that was acknowledged is
//! there exactly once, and every deployment's audit trail agrees with its
//! state (nothing half applied). Creates are group-committed, so this is
//! also the test that a batch is acknowledged only once it is durable.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ADMIN, Backend, ServerProcess, TestDatabase, create_request};
use eucora::v1 as pb;
use eucora::v1::deployment_service_client::DeploymentServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_kill_9_on_sqlite() {
    acknowledged_creates_survive_kill_9(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_kill_9_on_postgres() {
    acknowledged_creates_survive_kill_9(Backend::Postgres).await;
}

async fn acknowledged_creates_survive_kill_9(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    // Request id → the deployment id the server acknowledged for it.
    let acknowledged: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    for round in 0..3 {
        let mut server = ServerProcess::spawn(&database.url).await;
        let creators: Vec<_> = (0..16)
            .map(|worker| {
                let client = DeploymentServiceClient::new(server.channel_as(ADMIN));
                let acknowledged = acknowledged.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let request_id = format!("crash-{round}-{worker}-{n}");
                        let create = create_request(&request_id, &format!("app-{worker}"), 10);
                        match client.clone().create_deployment(create).await {
                            Ok(created) => {
                                let id = created.into_inner().deployment.unwrap().id;
                                acknowledged.lock().unwrap().insert(request_id, id);
                            }
                            // The server died: unacknowledged, and may or may not be there.
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        // Killed under load, once this round has had creates acknowledged (a
        // fixed sleep saw too few on a busy machine): mid-batch, whenever that is.
        let before = acknowledged.lock().unwrap().len();
        common::eventually("creates acknowledged under load", Duration::from_secs(30), || async {
            (acknowledged.lock().unwrap().len() >= before + 50).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.kill();
        for creator in creators {
            creator.await.unwrap();
        }
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 100, "the load ran: {} creates acknowledged", acknowledged.len());

    let server = ServerProcess::spawn(&database.url).await;
    let mut client = DeploymentServiceClient::new(server.channel_as(ADMIN));
    let mut stored: HashMap<String, pb::Deployment> = HashMap::new();
    let mut request = pb::ListDeploymentsRequest { page_size: 500, ..Default::default() };
    loop {
        let page = client.list_deployments(request.clone()).await.unwrap().into_inner();
        for deployment in page.deployments {
            assert!(stored.insert(deployment.id.clone(), deployment).is_none(), "listed once");
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    for (request_id, id) in &acknowledged {
        assert!(stored.contains_key(id), "acknowledged create {request_id} ({id}) is there");
        // A retry of an acknowledged create answers with it: stored exactly once.
        let retry = create_request(request_id, &format!("app-{}", request_id.split('-').nth(2).unwrap()), 10);
        let again = client.create_deployment(retry).await.unwrap().into_inner().deployment.unwrap();
        assert_eq!(&again.id, id);
    }
    // Every stored deployment's audit trail ends in its state.
    for deployment in stored.values() {
        let events = common::events_of(&mut client, &deployment.id).await;
        assert_eq!(events.first().map(|e| e.kind()), Some(pb::DeploymentEventKind::Created), "{}", deployment.id);
        assert_eq!(events.last().map(|e| e.to_status()), Some(deployment.status()), "{}", deployment.id);
    }
    eprintln!(
        "{backend:?}: {} creates acknowledged over 3 kills, {} deployments stored, all acknowledged present once",
        acknowledged.len(),
        stored.len()
    );
}
