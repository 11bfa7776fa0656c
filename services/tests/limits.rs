//! Limits and hangs: a flood of idle connections, too many watch streams or
//! streams on one connection, a connector adapter that never answers, and a
//! PostgreSQL connection that stalls or is cut away. Each must degrade visibly and briefly,
//! never hang the server or lock its clients out.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{CutProxy, StallProxy};
use common::{
    Backend, Options, TestDatabase, TestServer, assert_code, create_request, eventually_health, start_server_on,
    start_server_with,
};
use eucora::v1 as pb;
use eucora::v1::connector_service_client::ConnectorServiceClient;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use eucora_services::net::ConnectionLimits;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

/// Whether the server closed `stream` within `within` (end of stream or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 64];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => return true,
            // HTTP/2 servers speak first (SETTINGS): keep reading until closed.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_is_cut_and_clients_get_in() {
    let limits = ConnectionLimits {
        max_connections: 16,
        first_bytes_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(60),
    };
    let server = start_server_with(Backend::Sqlite, Options { connection_limits: limits, ..Options::default() }).await;
    let mut flood = Vec::new();
    for addr in [server.addr, server.metrics_addr] {
        for _ in 0..40 {
            flood.push(TcpStream::connect(addr).await.expect("connect"));
        }
    }
    // Past the cap, closed at once; silent ones, after the first-bytes timeout.
    for stream in &mut flood {
        assert!(closed_within(stream, Duration::from_secs(3)).await, "an idle flood connection stays open");
    }
    // Real clients get in on both listeners while the flood sockets are still held.
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut client = DeploymentServiceClient::new(common::authenticated(&channel, common::ADMIN));
    client.create_deployment(create_request("after-flood", "firefox", 10)).await.expect("create after the flood");
    let (status, _, _) = common::http_get(&server, "/metrics").await;
    assert_eq!(status, 200);
    drop(flood);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_are_capped() {
    let server = start_server_with(Backend::Sqlite, Options { max_watch_streams: 2, ..Options::default() }).await;
    let mut client = server.deployments();
    let watch = || pb::WatchDeploymentsRequest::default();
    let first = client.watch_deployments(watch()).await.expect("first watch");
    let _second = client.watch_deployments(watch()).await.expect("second watch");
    let status = assert_code(client.watch_deployments(watch()).await, Code::ResourceExhausted);
    assert!(status.message().contains("WatchDeployments"), "{}", status.message());
    // Closing one frees its place.
    drop(first);
    common::eventually("the freed watch place to be reused", Duration::from_secs(5), || {
        let mut client = client.clone();
        async move {
            match client.watch_deployments(watch()).await {
                Ok(stream) => Some(stream),
                Err(status) if status.code() == Code::ResourceExhausted => None,
                Err(status) => panic!("{status:?}"),
            }
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_per_connection_are_capped() {
    let server =
        start_server_with(Backend::Sqlite, Options { max_streams_per_connection: 2, ..Options::default() }).await;
    let mut client = server.deployments();
    let _a = client.watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap();
    let _b = client.watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap();
    // A third call on the same connection waits for a stream; another connection is not affected.
    let third =
        tokio::time::timeout(Duration::from_millis(500), client.get_deployment(pb::GetDeploymentRequest::default()));
    assert!(third.await.is_err(), "the third concurrent call on one connection must wait");
    let other = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let other = common::authenticated(&other, common::VIEWER);
    let answer = DeploymentServiceClient::new(other).get_deployment(pb::GetDeploymentRequest::default()).await;
    assert_code(answer, Code::InvalidArgument);
    server.stop().await;
}

/// An adapter that accepts connections and never answers.
async fn hung_adapter() -> (tokio::task::JoinHandle<()>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (task, endpoint)
}

/// An Ansible connector over HTTP to `endpoint`, calls cut after `call_timeout_s`.
fn hung_connector(name: &str, endpoint: &str, call_timeout_s: i64) -> pb::Connector {
    pb::Connector {
        name: name.into(),
        connector_type: pb::ConnectorType::Ansible.into(),
        driver: pb::ConnectorDriver::Http.into(),
        endpoint: endpoint.into(),
        enabled: true,
        call_timeout: Some(prost_types::Duration { seconds: call_timeout_s, nanos: 0 }),
        ..Default::default()
    }
}

async fn last_check(server: &TestServer, name: &str) -> Option<prost_types::Timestamp> {
    let mut client = ConnectorServiceClient::new(server.channel.clone());
    let connector = client.get_connector(pb::GetConnectorRequest { connector_name: name.into() }).await.unwrap();
    connector.into_inner().connector.unwrap().health.and_then(|h| h.last_check_time)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_adapter_delays_neither_other_probes_nor_shutdown() {
    let options = Options {
        connector_probe_interval: Duration::from_millis(200),
        shutdown_grace: Duration::from_millis(300),
        ..Options::default()
    };
    let server = start_server_with(Backend::Sqlite, options).await;
    let (_adapter, endpoint) = hung_adapter().await;
    let mut connectors = ConnectorServiceClient::new(server.channel.clone());
    let hung = hung_connector("ansible-hung", &endpoint, 20);
    connectors
        .create_connector(pb::CreateConnectorRequest { connector: Some(hung), ..Default::default() })
        .await
        .unwrap();

    // The healthy connectors are probed every interval while the hung one waits out its 20 s.
    let mut seen = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        seen.push(last_check(&server, "simulator-intune").await.expect("probed"));
    }
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "probes of healthy connectors stalled: {seen:?}");

    // A start waiting on the hung adapter is cut at the end of the grace period.
    let mut client = server.deployments();
    let request = pb::CreateDeploymentRequest {
        connector_type: pb::ConnectorType::Ansible.into(),
        connector_name: "ansible-hung".into(),
        ..create_request("hung-start", "firefox", 10)
    };
    let created = client.create_deployment(request).await.unwrap().into_inner().deployment.unwrap();
    let start = tokio::spawn(async move {
        client.start_deployment(pb::StartDeploymentRequest { deployment_id: created.id, ..Default::default() }).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    server.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(3), "shutdown took {:?} with a 300 ms grace", stopping.elapsed());
    let answer = tokio::time::timeout(Duration::from_secs(3), start).await.expect("the start call ends").unwrap();
    assert!(answer.is_err(), "the start cannot have reached the hung adapter: {answer:?}");
}

/// Deployments started on a connector whose adapter accepts connections and
/// never answers: each start ends at the connector's call timeout, the
/// breaker opens after `fail_max` of them and then refuses at once, and
/// meanwhile every other RPC (and a start on another connector) answers as
/// quickly as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_adapter_opens_its_breaker_and_slows_nothing_else() {
    let server = start_server_with(Backend::Sqlite, Options::default()).await;
    let (_adapter, endpoint) = hung_adapter().await;
    let mut connectors = ConnectorServiceClient::new(server.channel_as(common::ADMIN));
    let breaker =
        pb::CircuitBreakerConfig { fail_max: 2, reset_timeout: Some(prost_types::Duration { seconds: 600, nanos: 0 }) };
    let hung = pb::Connector { breaker: Some(breaker), ..hung_connector("ansible-hung", &endpoint, 1) };
    connectors
        .create_connector(pb::CreateConnectorRequest { connector: Some(hung), ..Default::default() })
        .await
        .unwrap();

    let mut client = server.deployments();
    let on_hung = |n: usize| pb::CreateDeploymentRequest {
        connector_type: pb::ConnectorType::Ansible.into(),
        connector_name: "ansible-hung".into(),
        ..create_request(&format!("hung-{n}"), "ansible-role", 10)
    };
    let mut hung_ids = Vec::new();
    for n in 0..3 {
        hung_ids.push(client.create_deployment(on_hung(n)).await.unwrap().into_inner().deployment.unwrap().id);
    }
    // The first two starts wait out the call timeout, concurrently; everything else is timed meanwhile.
    let starts: Vec<_> = hung_ids[..2]
        .iter()
        .map(|id| {
            let mut client = client.clone();
            let request = pb::StartDeploymentRequest { deployment_id: id.clone(), ..Default::default() };
            tokio::spawn(async move {
                let started = Instant::now();
                (client.start_deployment(request).await, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut slowest = Duration::ZERO;
    for n in 0..10 {
        let started = Instant::now();
        let created = common::create(&mut client, &format!("other-{n}"), "firefox", 10).await;
        client.get_deployment(pb::GetDeploymentRequest { deployment_id: created.id.clone() }).await.unwrap();
        client.list_deployments(pb::ListDeploymentsRequest::default()).await.unwrap();
        connectors.list_connectors(pb::ListConnectorsRequest::default()).await.unwrap();
        client
            .start_deployment(pb::StartDeploymentRequest { deployment_id: created.id, ..Default::default() })
            .await
            .unwrap();
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_millis(500), "other RPCs slowed to {slowest:?} by a hung adapter");
    for start in starts {
        let (answer, took) = start.await.unwrap();
        assert!(took < Duration::from_secs(3), "the call timeout holds: {took:?}");
        // The start is recorded and its delivery left queued for a retry, saying why.
        let lab = &answer.expect("started").into_inner().deployment.unwrap().ring_progress[0];
        assert_eq!(lab.delivery_state(), pb::DeliveryState::Pending, "{lab:?}");
        assert!(!lab.delivery_error.is_empty(), "{lab:?}");
    }
    let breaker = connectors
        .get_circuit_breaker(pb::GetCircuitBreakerRequest { connector_name: "ansible-hung".into() })
        .await
        .unwrap()
        .into_inner()
        .breaker
        .unwrap();
    assert_eq!(breaker.state(), pb::CircuitBreakerState::Open, "{breaker:?}");
    // An open breaker refuses at once instead of waiting on the adapter again.
    let started = Instant::now();
    let third = client
        .start_deployment(pb::StartDeploymentRequest { deployment_id: hung_ids[2].clone(), ..Default::default() })
        .await;
    assert!(started.elapsed() < Duration::from_millis(500), "an open breaker waited {:?}", started.elapsed());
    let lab = &third.expect("started").into_inner().deployment.unwrap().ring_progress[0];
    assert_eq!(lab.delivery_state(), pb::DeliveryState::Pending, "{lab:?}");
    assert!(lab.delivery_error.contains("circuit open"), "{}", lab.delivery_error);
    server.stop().await;
}

/// PostgreSQL frozen under the server (bytes stop moving, connections stay
/// open): calls fail UNAVAILABLE within the operation budget, health says
/// NOT_SERVING, and all is well again once it thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_postgres_fails_calls_promptly_and_recovers() {
    let proxy = StallProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let database = TestDatabase::create(Backend::Postgres).await.route_through(proxy.addr);
    let options = Options { operation_timeout: Duration::from_secs(1), ..Options::default() };
    let server = start_server_on(database, options).await;
    let mut client = server.deployments();
    client.create_deployment(create_request("before-stall", "firefox", 10)).await.expect("create before");

    proxy.stall();
    let started = Instant::now();
    let stalled = client.create_deployment(create_request("during-stall", "firefox", 10)).await;
    let status = assert_code(stalled, Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(3), "a stalled database held the call {:?}", started.elapsed());
    assert!(status.message().contains("database"), "{}", status.message());
    // A write waiting behind the stalled one is not held either.
    let started = Instant::now();
    assert_code(client.create_deployment(create_request("behind-stall", "firefox", 10)).await, Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(3));
    eventually_health(&server, ServingStatus::NotServing).await;

    proxy.resume();
    eventually_health(&server, ServingStatus::Serving).await;
    common::eventually("recovery after the stall", Duration::from_secs(10), || {
        let mut client = client.clone();
        async move {
            match client.create_deployment(create_request("after-stall", "firefox", 10)).await {
                Ok(created) => Some(created),
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
                    None
                }
            }
        }
    })
    .await;
    server.stop().await;
}

/// PostgreSQL cut away for 10 s under create load (every connection closed,
/// new ones refused): calls fail fast with UNAVAILABLE, health says
/// NOT_SERVING, and service comes back with no restart. Every acknowledged
/// create is there afterwards, and a retry of every refused one lands it
/// exactly once (a refused create may have committed before the cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_postgres_fails_fast_and_recovers_with_nothing_lost() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let proxy = CutProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let database = TestDatabase::create(Backend::Postgres).await.route_through(proxy.addr);
    let server = start_server_on(database, Options::default()).await;
    eventually_health(&server, ServingStatus::Serving).await;

    // Four creators run through the cut; each call is timed and its outcome kept.
    let running = Arc::new(AtomicBool::new(true));
    let creators: Vec<_> = (0..4)
        .map(|creator| {
            let mut client = server.deployments();
            let running = running.clone();
            tokio::spawn(async move {
                let (mut acknowledged, mut refused, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
                let mut n = 0;
                while running.load(Ordering::SeqCst) {
                    n += 1;
                    let request_id = format!("cut-{creator}-{n}");
                    let started = Instant::now();
                    let result = client.create_deployment(create_request(&request_id, "firefox", 10)).await;
                    slowest = slowest.max(started.elapsed());
                    match result {
                        Ok(created) => acknowledged.push(created.into_inner().deployment.unwrap().id),
                        Err(status) => {
                            assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
                            refused.push(request_id);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                (acknowledged, refused, slowest)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    let cut_at = Instant::now();
    eventually_health(&server, ServingStatus::NotServing).await;
    let mut client = server.deployments();
    let started = Instant::now();
    let read = client.list_deployments(pb::ListDeploymentsRequest::default()).await;
    let status = assert_code(read, Code::Unavailable);
    assert!(status.message().contains("database"), "{}", status.message());
    assert!(started.elapsed() < Duration::from_secs(2), "a read held {:?} by a cut database", started.elapsed());
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(cut_at.elapsed())).await;

    proxy.restore();
    eventually_health(&server, ServingStatus::Serving).await;
    running.store(false, Ordering::SeqCst);
    let (mut acknowledged, mut refused, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
    for creator in creators {
        let (a, r, s) = creator.await.unwrap();
        acknowledged.extend(a);
        refused.extend(r);
        slowest = slowest.max(s);
    }
    assert!(slowest < Duration::from_secs(3), "a create was held {slowest:?} by a cut database");
    assert!(refused.len() >= 4, "the cut refused creates: {refused:?}");
    assert!(!acknowledged.is_empty(), "creates succeeded before the cut");

    // A retry of every refused create lands it (once: the same id if it had committed).
    for request_id in &refused {
        let retried = client.create_deployment(create_request(request_id, "firefox", 10)).await;
        acknowledged.push(
            retried.unwrap_or_else(|s| panic!("retry of {request_id}: {s:?}")).into_inner().deployment.unwrap().id,
        );
    }
    let stored: std::collections::HashSet<_> =
        common::all_deployments(&mut client).await.into_iter().map(|d| d.id).collect();
    let acknowledged: std::collections::HashSet<_> = acknowledged.into_iter().collect();
    assert_eq!(stored, acknowledged, "exactly one deployment per request id, none lost");
    server.stop().await;
}

/// With a probe interval of a minute, only the failed call itself can turn
/// health NOT_SERVING within a second of PostgreSQL going away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flips_on_the_first_failed_call() {
    let options = Options { health_probe_interval: Duration::from_secs(60), ..Options::default() };
    let server = start_server_with(Backend::Postgres, options).await;
    eventually_health(&server, ServingStatus::Serving).await;
    server.database.take_offline().await;
    let failed = server.deployments().list_deployments(pb::ListDeploymentsRequest::default()).await;
    assert_code(failed, Code::Unavailable);
    common::eventually("NOT_SERVING within a second of the failed call", Duration::from_secs(1), || async {
        (common::health_of(&server).await == ServingStatus::NotServing).then_some(())
    })
    .await;
    server.database.bring_online().await;
    server.stop().await;
}

/// A connector on an adapter that never answers, and a deployment of it created, not started.
async fn hanging_deployment(server: &TestServer, endpoint: &str, request_id: &str) -> String {
    let connector = hung_connector("hanging", endpoint, 30);
    let create = pb::CreateConnectorRequest { connector: Some(connector), ..Default::default() };
    let _ = ConnectorServiceClient::new(server.channel.clone()).create_connector(create).await;
    let request = pb::CreateDeploymentRequest {
        connector_type: pb::ConnectorType::Ansible.into(),
        connector_name: "hanging".into(),
        ..create_request(request_id, "ansible-role", 10)
    };
    server.deployments().create_deployment(request).await.unwrap().into_inner().deployment.unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_a_limit_get_the_right_code() {
    use eucora_services::grpc::admission::AdmissionLimits;
    use std::num::NonZeroU32;
    use tonic_types::StatusExt;

    let admission = AdmissionLimits {
        max_in_flight: 2,
        rate_per_identity: NonZeroU32::new(5),
        burst_per_identity: NonZeroU32::new(5).unwrap(),
    };
    let options = Options {
        admission,
        default_deadline: Duration::from_millis(1500),
        max_watch_streams_per_identity: 2,
        ..Options::default()
    };
    let server = start_server_with(Backend::Sqlite, options).await;

    // A caller past its rate is told when to come back; another caller is not affected.
    let mut viewer = server.deployments_as(common::VIEWER);
    let mut refused = None;
    for _ in 0..10 {
        if let Err(status) = viewer.list_deployments(pb::ListDeploymentsRequest::default()).await {
            refused = Some(status);
            break;
        }
    }
    let refused = refused.expect("the sixth call within a second is over the rate");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let retry = refused.get_error_details().retry_info().expect("RetryInfo").retry_delay.expect("a delay");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1), "{retry:?}");
    server.deployments_as(common::OPERATOR).list_deployments(pb::ListDeploymentsRequest::default()).await.unwrap();

    // Watch streams per identity: the third of one caller is refused, another caller's is not.
    let mut watcher = server.deployments_as(common::APPROVER);
    let _first = watcher.watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap();
    let _second = watcher.watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap();
    assert_code(watcher.watch_deployments(pb::WatchDeploymentsRequest::default()).await, Code::ResourceExhausted);
    let _other = server.deployments().watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap();

    // A call with no deadline of its own gets the server's: a hung adapter cannot hold it.
    let (adapter, endpoint) = hung_adapter().await;
    let first = hanging_deployment(&server, &endpoint, "hang-1").await;
    let started = Instant::now();
    let start = pb::StartDeploymentRequest { deployment_id: first, ..Default::default() };
    assert_code(server.deployments().start_deployment(start).await, Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(4), "cut at the default deadline: {:?}", started.elapsed());

    // Past the calls in flight, more are shed at once (with RetryInfo), not queued.
    let held: Vec<_> = ["hang-2", "hang-3"]
        .into_iter()
        .map(|request_id| {
            let mut client = server.deployments();
            let request_id = request_id.to_owned();
            let call = async move {
                let request = pb::CreateDeploymentRequest {
                    connector_type: pb::ConnectorType::Ansible.into(),
                    connector_name: "hanging".into(),
                    ..create_request(&request_id, "ansible-role", 10)
                };
                let created = client.create_deployment(request).await.unwrap().into_inner().deployment.unwrap();
                client
                    .start_deployment(pb::StartDeploymentRequest { deployment_id: created.id, ..Default::default() })
                    .await
            };
            tokio::spawn(call)
        })
        .collect();
    // Both starts are now waiting on the adapter, holding the two places in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shed = server.deployments().get_deployment(pb::GetDeploymentRequest::default()).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert!(shed.get_error_details().retry_info().is_some());
    for call in held {
        let _ = call.await;
    }

    let m = common::scrape(&server).await;
    for limit in ["rate", "watch_streams", "deadline", "in_flight"] {
        assert!(m.value("limits_exceeded_total", &[("limit", limit)]) >= 1.0, "{limit}");
    }
    adapter.abort();
    server.stop().await;
}
