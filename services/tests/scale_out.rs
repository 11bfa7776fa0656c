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

const LEASE_PERIOD: Duration = Duration::from_secs(1);

/// Which of `replicas` holds the controller lease, once exactly one does.
async fn controller_holder(replicas: &[&ServerProcess]) -> Option<usize> {
    let mut holders = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        let scraped = replica.scrape().await;
        let held = scraped.find("coordination_lease_held", &[("lease", "controller")]);
        if held.first().is_some_and(|sample| sample.value == 1.0) {
            holders.push(i);
        }
    }
    match holders.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_controller_is_replaced_within_two_lease_periods() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let args = ["--lease-period", "1s", "--controller-interval", "300ms"];
    let first = ServerProcess::spawn_with(&database.url, &args).await;
    let (second, third) =
        tokio::join!(ServerProcess::spawn_with(&database.url, &args), ServerProcess::spawn_with(&database.url, &args));
    let mut replicas = [first, second, third];
    let holder = common::eventually("one controller among three replicas", Duration::from_secs(10), || {
        let replicas: Vec<&ServerProcess> = replicas.iter().collect();
        async move { controller_holder(&replicas).await }
    })
    .await;
    let survivor = &replicas[(holder + 1) % 3];
    let channel = Channel::from_shared(format!("http://{}", survivor.grpc)).unwrap().connect_lazy();
    let as_token = |token: &str| common::authenticated(&channel, token);

    // No bake in LAB (a weakening: proposed by one admin, approved by another).
    let mut policies = eucora::v1::ring_promotion_service_client::RingPromotionServiceClient::new(as_token(ADMIN));
    let update = pb::UpdateRingPolicyRequest {
        policy: Some(pb::RingPolicy {
            ring: pb::Ring::Lab.into(),
            bake_time: Some(Default::default()),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["bake_time".into()] }),
        reason: "scale-out test".into(),
    };
    let id = policies.update_ring_policy(update).await.unwrap().into_inner().pending_change_id;
    let mut dave = eucora::v1::control_change_service_client::ControlChangeServiceClient::new(as_token("dev-dave"));
    dave.approve_control_change(pb::ApproveControlChangeRequest { id, ..Default::default() }).await.unwrap();
    // A simulator that reports nothing: the test reports the outcomes.
    let quiet = pb::Connector {
        name: "quiet-simulator".into(),
        connector_type: pb::ConnectorType::Intune.into(),
        driver: pb::ConnectorDriver::Simulator.into(),
        enabled: true,
        simulator: Some(pb::SimulatorConfig { device_count: 0, ..Default::default() }),
        ..Default::default()
    };
    let create = pb::CreateConnectorRequest { connector: Some(quiet), ..Default::default() };
    eucora::v1::connector_service_client::ConnectorServiceClient::new(as_token(ADMIN))
        .create_connector(create)
        .await
        .unwrap();
    let mut deployments = DeploymentServiceClient::new(as_token(ADMIN));
    let mut started = Vec::new();
    for i in 0..4 {
        started.push(common::started(&mut deployments, &format!("takeover-{i}")).await);
    }

    // The holder dies without a word; its lease lapses and another replica takes it.
    replicas[holder].kill();
    let died = std::time::Instant::now();
    let alive: Vec<&ServerProcess> =
        replicas.iter().enumerate().filter(|(i, _)| *i != holder).map(|(_, replica)| replica).collect();
    common::eventually("another replica to take the controller", 2 * LEASE_PERIOD + Duration::from_millis(500), || {
        let alive = alive.clone();
        async move { controller_holder(&alive).await }
    })
    .await;
    eprintln!("controller taken over {:?} after the holder died", died.elapsed());

    // It acts on what the dead replica would have: each deployment once.
    for deployment in &started {
        common::report_healthy(&mut deployments, deployment).await;
    }
    for deployment in &started {
        let get = pb::GetDeploymentRequest { deployment_id: deployment.id.clone() };
        common::eventually("the new controller to promote", Duration::from_secs(10), || {
            let (mut deployments, get) = (deployments.clone(), get.clone());
            async move {
                let now = deployments.get_deployment(get).await.unwrap().into_inner().deployment.unwrap();
                (now.current_ring() == pb::Ring::Canary).then_some(())
            }
        })
        .await;
        let mut promotions =
            eucora::v1::ring_promotion_service_client::RingPromotionServiceClient::new(as_token(ADMIN));
        let list = pb::ListPromotionsRequest { deployment_id: deployment.id.clone(), ..Default::default() };
        let recorded = promotions.list_promotions(list).await.unwrap().into_inner().promotions;
        let promoted: Vec<_> = recorded.iter().filter(|p| p.result() == pb::PromotionResult::Promoted).collect();
        assert_eq!(promoted.len(), 1, "{recorded:?}");
        assert_eq!(promoted[0].actor, "controller");
    }
}
