//! Several `eucora serve` processes on one PostgreSQL and one Redis (a key
//! prefix of their own per test), as an estate runs them:
//! - what one replica commits, every replica's watchers see — in sequence
//!   order, once each, with no gaps even while replicas write concurrently —
//!   and a watcher that reconnects with `after_sequence` misses nothing;
//! - the controller runs in one replica, is taken over within two lease
//!   periods when its holder dies, and a frozen former holder is fenced off;
//! - racing promotions over three replicas promote and dispatch once;
//! - a breaker opened through one replica is open on all, a reset through
//!   another closes it everywhere;
//! - losing Redis degrades coordination visibly and loses nothing.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::proxy::CutProxy;
use common::{ADMIN, Backend, ServerProcess, TestDatabase, create_request};
use eucora::auth::Authenticated;
use eucora::v1 as pb;
use eucora::v1::connector_service_client::ConnectorServiceClient;
use eucora::v1::control_change_service_client::ControlChangeServiceClient;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use eucora::v1::ring_promotion_service_client::RingPromotionServiceClient;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;

const REDIS: &str = "127.0.0.1:6379";

/// One installation: a database and a Redis key prefix of its own.
struct Installation {
    database: TestDatabase,
    prefix: String,
}

impl Installation {
    async fn new() -> Installation {
        let prefix = format!("eucora-test-{}:", uuid::Uuid::new_v4().simple());
        Installation { database: TestDatabase::create(Backend::Postgres).await, prefix }
    }

    /// A replica reaching Redis at `redis`, with more `args`.
    async fn replica_via(&self, redis: SocketAddr, args: &[&str]) -> ServerProcess {
        let url = format!("redis://{redis}");
        let shared = ["--redis-url", &url, "--redis-key-prefix", &self.prefix, "--allow-loopback-connectors"];
        let args: Vec<&str> = shared.iter().chain(args).copied().collect();
        ServerProcess::spawn_with(&self.database.url, &args).await
    }

    async fn replica(&self, args: &[&str]) -> ServerProcess {
        self.replica_via(REDIS.parse().unwrap(), args).await
    }

    async fn three_replicas(&self, args: &[&str]) -> [ServerProcess; 3] {
        let (a, b, c) = tokio::join!(self.replica(args), self.replica(args), self.replica(args));
        [a, b, c]
    }
}

fn client(process: &ServerProcess) -> DeploymentServiceClient<Authenticated> {
    DeploymentServiceClient::new(process.channel_as(ADMIN))
}

/// No bake time in LAB: a weakening, proposed by one admin and approved by another.
async fn no_bake_in_lab(replica: &ServerProcess) {
    let update = pb::UpdateRingPolicyRequest {
        policy: Some(pb::RingPolicy {
            ring: pb::Ring::Lab.into(),
            bake_time: Some(Default::default()),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["bake_time".into()] }),
        reason: "scale-out test".into(),
    };
    let mut policies = RingPromotionServiceClient::new(replica.channel_as(ADMIN));
    let id = policies.update_ring_policy(update).await.unwrap().into_inner().pending_change_id;
    let mut dave = ControlChangeServiceClient::new(replica.channel_as("dev-dave"));
    dave.approve_control_change(pb::ApproveControlChangeRequest { id, ..Default::default() }).await.unwrap();
}

async fn create_connector(replica: &ServerProcess, connector: pb::Connector) {
    let create = pb::CreateConnectorRequest { connector: Some(connector), ..Default::default() };
    ConnectorServiceClient::new(replica.channel_as(ADMIN)).create_connector(create).await.unwrap();
}

/// An Intune connector calling the adapter at `endpoint`.
fn http_connector(name: &str, endpoint: &str, fail_max: i32) -> pb::Connector {
    pb::Connector {
        name: name.into(),
        connector_type: pb::ConnectorType::Intune.into(),
        driver: pb::ConnectorDriver::Http.into(),
        endpoint: endpoint.into(),
        enabled: true,
        call_timeout: Some(prost_types::Duration { seconds: 2, nanos: 0 }),
        breaker: Some(pb::CircuitBreakerConfig {
            fail_max,
            reset_timeout: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
        }),
        ..Default::default()
    }
}

/// A deployment that uses connector `connector`, created and started.
async fn started_on(replica: &ServerProcess, request_id: &str, connector: &str) -> pb::Deployment {
    let mut deployments = client(replica);
    let create = pb::CreateDeploymentRequest {
        connector_name: connector.into(),
        target_ring: pb::Ring::Global.into(),
        ..create_request(request_id, "fleet-app", 10)
    };
    let created = deployments.create_deployment(create).await.unwrap().into_inner().deployment.unwrap();
    let start = pb::StartDeploymentRequest { deployment_id: created.id, ..Default::default() };
    deployments.start_deployment(start).await.unwrap().into_inner().deployment.unwrap()
}

/// An adapter that accepts every deploy and counts them by deployment and ring.
#[derive(Default)]
struct CountingAdapter {
    deploys: Mutex<Vec<(String, String)>>,
}

impl CountingAdapter {
    async fn start() -> (String, Arc<CountingAdapter>) {
        use axum::routing::{get, post};
        let adapter = Arc::new(CountingAdapter::default());
        let counted = adapter.clone();
        let app = axum::Router::new()
            .route(
                "/v1/deployments",
                post(move |axum::Json(work): axum::Json<serde_json::Value>| async move {
                    let field = |name: &str| work[name].as_str().unwrap_or_default().to_owned();
                    counted.deploys.lock().unwrap().push((field("deployment_id"), field("ring")));
                    axum::Json(serde_json::json!({}))
                }),
            )
            .route("/v1/health", get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), adapter)
    }

    /// How many deploys of `deployment` the adapter received, by ring.
    fn deploys_of(&self, deployment: &str) -> Vec<String> {
        let deploys = self.deploys.lock().unwrap();
        deploys.iter().filter(|(id, _)| id == deployment).map(|(_, ring)| ring.clone()).collect()
    }
}

async fn promotions_of(replica: &ServerProcess, deployment: &pb::Deployment) -> Vec<pb::Promotion> {
    let list = pb::ListPromotionsRequest { deployment_id: deployment.id.clone(), ..Default::default() };
    let mut promotions = RingPromotionServiceClient::new(replica.channel_as(ADMIN));
    let recorded = promotions.list_promotions(list).await.unwrap().into_inner().promotions;
    recorded.into_iter().filter(|p| p.result() == pb::PromotionResult::Promoted).collect()
}

/// The value of `name{labels}` on `replica`'s /metrics, when exported.
async fn metric(replica: &ServerProcess, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    replica.scrape().await.find(name, labels).first().map(|sample| sample.value)
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
    let installation = Installation::new().await;
    let [a, b, c] = installation.three_replicas(&[]).await;
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
    let installation = Installation::new().await;
    let mut replicas = installation.three_replicas(&["--lease-period", "1s", "--controller-interval", "300ms"]).await;
    let holder = common::eventually("one controller among three replicas", Duration::from_secs(10), || {
        let replicas: Vec<&ServerProcess> = replicas.iter().collect();
        async move { controller_holder(&replicas).await }
    })
    .await;
    let survivor = (holder + 1) % 3;
    let on_survivor = &replicas[survivor];
    no_bake_in_lab(on_survivor).await;
    let (endpoint, adapter) = CountingAdapter::start().await;
    create_connector(on_survivor, http_connector("counting", &endpoint, 5)).await;
    let mut started = Vec::new();
    for i in 0..4 {
        started.push(started_on(on_survivor, &format!("takeover-{i}"), "counting").await);
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
    let survivor = &replicas[survivor];
    let mut deployments = client(survivor);
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
        let promoted = promotions_of(survivor, deployment).await;
        assert_eq!(promoted.len(), 1, "{promoted:?}");
        assert_eq!(promoted[0].actor, "controller");
        assert_eq!(adapter.deploys_of(&deployment.id).len(), 2, "LAB and CANARY, once each");
    }
}

/// The argo-rollouts#2117 failure: a controller that was frozen while
/// another replica took its lease acts when it wakes — and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_lease_holder_is_refused_by_the_fence() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let installation = Installation::new().await;
    // Its database operations may wait longer than the test holds the lease row.
    let args = ["--lease-period", "2s", "--controller-interval", "300ms", "--database-operation-timeout", "30s"];
    let holder = installation.replica(&args).await;
    let other = installation.replica(&["--no-controller"]).await;
    common::eventually("the first replica to hold the controller", Duration::from_secs(10), || async {
        (metric(&holder, "coordination_lease_held", &[("lease", "controller")]).await == Some(1.0)).then_some(())
    })
    .await;
    no_bake_in_lab(&other).await;
    let (endpoint, adapter) = CountingAdapter::start().await;
    create_connector(&other, http_connector("counting", &endpoint, 5)).await;
    let deployment = started_on(&other, "frozen-holder", "counting").await;

    // The holder decides to promote, and its write waits on the lease row
    // (as behind a slow disk or a network partition) …
    let db = sea_orm::Database::connect(installation.database.url.as_str()).await.unwrap();
    let takeover = db.begin().await.unwrap();
    takeover.execute_unprepared("SELECT token FROM leases WHERE name = 'controller' FOR UPDATE").await.unwrap();
    common::report_healthy(&mut client(&other), &deployment).await;
    common::eventually("the holder's promotion to wait on the lease", Duration::from_secs(10), || {
        let db = &db;
        async move {
            let waiting = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' AND query LIKE '%leases%FOR SHARE%'",
                ))
                .await
                .unwrap()?
                .try_get::<i64>("", "n")
                .unwrap();
            (waiting > 0).then_some(())
        }
    })
    .await;
    // … then freezes past its lease, which another replica takes.
    holder.signal("STOP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    takeover
        .execute_unprepared(
            "UPDATE leases SET holder = 'usurper', token = token + 1, expires_at = now() + interval '1 hour' \
             WHERE name = 'controller'",
        )
        .await
        .unwrap();
    takeover.commit().await.unwrap();
    holder.signal("CONT");

    // Woken, it finishes its write under the old token: refused.
    common::eventually("the stale promotion to be refused", Duration::from_secs(10), || async {
        let fenced = [("action", "promote"), ("status", "fenced")];
        (metric(&holder, "controller_actions_total", &fenced).await == Some(1.0)).then_some(())
    })
    .await;
    assert!(promotions_of(&other, &deployment).await.is_empty(), "nothing was promoted");
    let now = client(&other)
        .get_deployment(pb::GetDeploymentRequest { deployment_id: deployment.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(now.current_ring(), pb::Ring::Lab);
    assert_eq!(adapter.deploys_of(&deployment.id), ["lab"], "only LAB was ever dispatched");
    common::eventually("the frozen replica to know it lost the lease", Duration::from_secs(10), || async {
        (metric(&holder, "coordination_lease_held", &[("lease", "controller")]).await == Some(0.0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_promotions_over_three_replicas_promote_and_dispatch_once() {
    let installation = Installation::new().await;
    let replicas = installation.three_replicas(&["--no-controller"]).await;
    no_bake_in_lab(&replicas[0]).await;
    let (endpoint, adapter) = CountingAdapter::start().await;
    create_connector(&replicas[1], http_connector("counting", &endpoint, 5)).await;
    let deployment = started_on(&replicas[2], "race", "counting").await;
    common::report_healthy(&mut client(&replicas[0]), &deployment).await;

    let promotions = (0..32).map(|i| {
        let mut promotions = RingPromotionServiceClient::new(replicas[i % 3].channel_as(ADMIN));
        let request = common::promote_request(&deployment);
        async move { promotions.promote_deployment(request).await.map(|_| ()) }
    });
    let results = futures_util::future::join_all(promotions).await;
    let succeeded = results.iter().filter(|result| result.is_ok()).count();
    let codes: Vec<tonic::Code> = results.iter().filter_map(|r| r.as_ref().err()).map(tonic::Status::code).collect();
    eprintln!("32 racing promotions: {succeeded} succeeded, the others {codes:?}");
    assert_eq!(succeeded, 1, "{codes:?}");
    assert!(
        codes.iter().all(|code| matches!(code, tonic::Code::Aborted | tonic::Code::FailedPrecondition)),
        "{codes:?}"
    );
    assert_eq!(promotions_of(&replicas[1], &deployment).await.len(), 1);
    let events = common::events_of(&mut client(&replicas[0]), &deployment.id).await;
    assert_eq!(adapter.deploys_of(&deployment.id), ["lab", "canary"], "each ring dispatched once: {events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_through_one_replica_is_open_on_all_and_a_reset_closes_it_everywhere() {
    let installation = Installation::new().await;
    let replicas = installation.three_replicas(&["--no-controller"]).await;
    // Nothing listens on the discard port: every call fails at once.
    create_connector(&replicas[0], http_connector("unreachable", "http://127.0.0.1:9", 2)).await;
    let state_everywhere = |wanted: f64| {
        let replicas = &replicas;
        async move {
            for replica in replicas {
                let labels = [("service", "unreachable")];
                if metric(replica, "circuit_breaker_state", &labels).await != Some(wanted) {
                    return None;
                }
            }
            Some(())
        }
    };

    started_on(&replicas[0], "breaker", "unreachable").await;
    common::eventually("the breaker OPEN on every replica's /metrics", Duration::from_secs(5), || {
        state_everywhere(1.0)
    })
    .await;
    let get = pb::GetCircuitBreakerRequest { connector_name: "unreachable".into() };
    let on_b = ConnectorServiceClient::new(replicas[1].channel_as(ADMIN))
        .get_circuit_breaker(get)
        .await
        .unwrap()
        .into_inner()
        .breaker
        .unwrap();
    assert_eq!(on_b.state(), pb::CircuitBreakerState::Open);

    let reset = pb::ResetCircuitBreakerRequest { connector_name: "unreachable".into(), ..Default::default() };
    ConnectorServiceClient::new(replicas[2].channel_as(ADMIN)).reset_circuit_breaker(reset).await.unwrap();
    common::eventually("the breaker CLOSED on every replica's /metrics", Duration::from_secs(5), || {
        state_everywhere(0.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_degrades_coordination_visibly_and_loses_nothing() {
    let installation = Installation::new().await;
    let proxy = CutProxy::start(REDIS.parse().unwrap()).await;
    let args = ["--no-controller"];
    let (a, b, c) = tokio::join!(
        installation.replica_via(proxy.addr, &args),
        installation.replica_via(proxy.addr, &args),
        installation.replica_via(proxy.addr, &args)
    );
    let replicas = [a, b, c];
    let coordination_everywhere = |status: ServingStatus, up: f64| {
        let replicas = &replicas;
        async move {
            for replica in replicas {
                let healthy = replica.health("coordination").await == Some(status);
                if !healthy || metric(replica, "coordination_redis_up", &[]).await != Some(up) {
                    return None;
                }
            }
            Some(())
        }
    };
    common::eventually("Redis up on every replica", Duration::from_secs(10), || {
        coordination_everywhere(ServingStatus::Serving, 1.0)
    })
    .await;
    no_bake_in_lab(&replicas[0]).await;
    let (endpoint, adapter) = CountingAdapter::start().await;
    create_connector(&replicas[0], http_connector("counting", &endpoint, 5)).await;
    let mut watch =
        client(&replicas[2]).watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap().into_inner();
    let before = stored_sequences(&mut client(&replicas[0])).await.len();

    // Redis goes away: coordination degrades, visibly; the service does not.
    proxy.cut();
    common::eventually("every replica to say coordination is degraded", Duration::from_secs(10), || {
        coordination_everywhere(ServingStatus::NotServing, 0.0)
    })
    .await;
    for replica in &replicas {
        assert_eq!(replica.health("").await, Some(ServingStatus::Serving), "RPCs keep working");
    }
    let mut during = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        during.push(started_on(replica, &format!("without-redis-{i}"), "counting").await);
    }
    // Events of every replica still reach C's watcher (read from the database).
    let stored = stored_sequences(&mut client(&replicas[1])).await;
    let seen: Vec<i64> = watched(&mut watch, stored.len() - before).await.iter().map(|e| e.sequence).collect();
    assert_eq!(seen, stored[before..]);

    // Back by itself, with nothing lost and nothing done twice.
    proxy.restore();
    common::eventually("every replica to be back on Redis", Duration::from_secs(15), || {
        coordination_everywhere(ServingStatus::Serving, 1.0)
    })
    .await;
    let after = started_on(&replicas[1], "with-redis-again", "counting").await;
    let promotions = during.iter().chain([&after]).enumerate().map(|(i, deployment)| {
        let replica = &replicas[i % 3];
        async move {
            common::report_healthy(&mut client(replica), deployment).await;
            let mut promotions = RingPromotionServiceClient::new(replica.channel_as(ADMIN));
            promotions.promote_deployment(common::promote_request(deployment)).await.unwrap();
        }
    });
    futures_util::future::join_all(promotions).await;
    for deployment in during.iter().chain([&after]) {
        assert_eq!(promotions_of(&replicas[0], deployment).await.len(), 1);
        assert_eq!(adapter.deploys_of(&deployment.id), ["lab", "canary"], "each ring dispatched once");
    }
}
