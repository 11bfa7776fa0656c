//! Several replicas on one PostgreSQL: what one replica commits, every
//! replica's watchers see — in sequence order, once each, with no gaps even
//! while replicas write concurrently — and a watcher that reconnects with
//! `after_sequence` misses nothing.

mod common;

use std::time::Duration;

use common::{ADMIN, Backend, ServerProcess, TestDatabase, create_request};
use eucora::auth::Authenticated;
use eucora::v1 as pb;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

fn client(process: &ServerProcess) -> DeploymentServiceClient<Authenticated> {
    let channel = Channel::from_shared(format!("http://{}", process.grpc)).unwrap().connect_lazy();
    DeploymentServiceClient::new(common::authenticated(&channel, ADMIN))
}

/// Every stored event's sequence, in order.
async fn stored_sequences(client: &mut DeploymentServiceClient<Authenticated>) -> Vec<i64> {
    let mut sequences = Vec::new();
    let mut request = pb::ListEventsRequest { page_size: 1000, ..Default::default() };
    loop {
        let page = client.list_events(request.clone()).await.unwrap().into_inner();
        sequences.extend(page.events.iter().map(|event| event.sequence));
        if page.next_page_token.is_empty() {
            return sequences;
        }
        request.page_token = page.next_page_token;
    }
}

/// Reads `count` events from a watch stream.
async fn watched(
    stream: &mut tonic::Streaming<pb::WatchDeploymentsResponse>,
    count: usize,
) -> Vec<pb::DeploymentEvent> {
    let mut events = Vec::new();
    while events.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} events arrived", events.len()));
        match next.expect("the stream stays open").unwrap().payload.unwrap() {
            pb::watch_deployments_response::Payload::Event(event) => events.push(event),
            pb::watch_deployments_response::Payload::MissedEventCount(n) => panic!("{n} events missed"),
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_every_replica_see_every_replicas_events_in_order() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let a = ServerProcess::spawn(&database.url).await;
    let (b, c) = tokio::join!(ServerProcess::spawn(&database.url), ServerProcess::spawn(&database.url));
    let (mut on_a, mut on_b, mut on_c) = (client(&a), client(&b), client(&c));
    let mut watch = on_c.watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap().into_inner();

    // 40 creates through A and B at once: each commits two events (created,
    // and the risk decision), so their transactions interleave.
    let creates = (0..40).map(|i| {
        let mut replica = if i % 2 == 0 { on_a.clone() } else { on_b.clone() };
        async move { replica.create_deployment(create_request(&format!("replica-{i}"), "fleet-app", 10)).await.unwrap() }
    });
    futures_util::future::join_all(creates).await;
    let seen = watched(&mut watch, 80).await;
    let sequences: Vec<i64> = seen.iter().map(|event| event.sequence).collect();
    assert!(sequences.windows(2).all(|pair| pair[0] < pair[1]), "in order, once each: {sequences:?}");
    assert_eq!(sequences, stored_sequences(&mut on_a).await, "exactly the stored events, no gap");

    // A watcher that reconnects after the 30th event on another replica
    // gets the rest, then live events.
    let resume = pb::WatchDeploymentsRequest { after_sequence: sequences[29], ..Default::default() };
    let mut resumed = on_b.watch_deployments(resume).await.unwrap().into_inner();
    on_a.create_deployment(create_request("replica-live", "fleet-app", 10)).await.unwrap();
    let rest: Vec<i64> = watched(&mut resumed, 52).await.iter().map(|event| event.sequence).collect();
    let mut expected = sequences[30..].to_vec();
    let stored = stored_sequences(&mut on_c).await;
    expected.extend(&stored[80..]);
    assert_eq!(rest, expected);
    // The live events reached the first watcher too.
    let live: Vec<i64> = watched(&mut watch, 2).await.iter().map(|event| event.sequence).collect();
    assert_eq!(live, stored[80..]);
}
