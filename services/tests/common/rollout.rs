//! A rollout driven by the controller with a clock the test moves: a
//! controlled server, simulator connectors, started deployments and waits
//! on their events and decisions.

use std::time::Duration;

use eucora::v1 as pb;
use eucora::v1::connector_service_client::ConnectorServiceClient;
use eucora::v1::watch_deployments_response::Payload;
use tokio_stream::StreamExt;
use tonic::Streaming;

use super::{Backend, ManualClock, Options, TestServer, create_request, scrape, start_server_with};

/// A server whose controller looks every 25 ms, and the clock it reads.
pub async fn controlled_server(backend: Backend) -> (TestServer, ManualClock) {
    let time = ManualClock::default();
    let options =
        Options { clock: time.clock(), controller_interval: Some(Duration::from_millis(25)), ..Default::default() };
    (start_server_with(backend, options).await, time)
}

/// A simulator connector reporting `devices` devices, `failure_rate` of them failing.
pub async fn simulator(server: &TestServer, name: &str, devices: i64, failure_rate: f64) {
    let connector = pb::Connector {
        name: name.into(),
        connector_type: pb::ConnectorType::Landscape.into(),
        driver: pb::ConnectorDriver::Simulator.into(),
        enabled: true,
        simulator: Some(pb::SimulatorConfig {
            latency: Some(prost_types::Duration { seconds: 0, nanos: 2_000_000 }),
            failure_rate,
            device_count: devices,
        }),
        ..Default::default()
    };
    let request = pb::CreateConnectorRequest { connector: Some(connector), ..Default::default() };
    ConnectorServiceClient::new(server.channel.clone()).create_connector(request).await.unwrap();
}

/// A started deployment to GLOBAL through `connector`, and a watch on it opened before the start.
pub async fn started(
    server: &TestServer,
    connector: &str,
    request_id: &str,
) -> (pb::Deployment, Streaming<pb::WatchDeploymentsResponse>) {
    let mut client = server.deployments();
    let request = pb::CreateDeploymentRequest {
        connector_type: pb::ConnectorType::Landscape.into(),
        connector_name: connector.into(),
        target_ring: pb::Ring::Global.into(),
        ..create_request(request_id, "thunderbird", 10)
    };
    let created = client.create_deployment(request).await.unwrap().into_inner().deployment.unwrap();
    let watch = client
        .watch_deployments(pb::WatchDeploymentsRequest { deployment_id: created.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let start = pb::StartDeploymentRequest { deployment_id: created.id, ..Default::default() };
    (client.start_deployment(start).await.unwrap().into_inner().deployment.unwrap(), watch)
}

/// The next event of `kind` (and ring, when given).
pub async fn wait_for(
    watch: &mut Streaming<pb::WatchDeploymentsResponse>,
    kind: pb::DeploymentEventKind,
    ring: Option<pb::Ring>,
) -> pb::DeploymentEvent {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind:?} event within 20 s"))
            .expect("stream open")
            .expect("no error");
        if let Some(Payload::Event(event)) = next.payload
            && event.kind() == kind
            && ring.is_none_or(|r| event.ring() == r)
        {
            return event;
        }
    }
}

pub async fn get(server: &TestServer, id: &str) -> pb::Deployment {
    let request = pb::GetDeploymentRequest { deployment_id: id.to_owned() };
    server.deployments().get_deployment(request).await.unwrap().into_inner().deployment.unwrap()
}

/// Scrapes until the controller has made at least `n` decisions of `result` — proof it looked.
pub async fn evaluated(server: &TestServer, result: &str, n: f64) {
    let what = format!("the controller to decide {result:?} {n} times");
    super::eventually(&what, Duration::from_secs(10), || async {
        let m = scrape(server).await;
        let decided: f64 = m.find("controller_evaluations_total", &[("result", result)]).iter().map(|s| s.value).sum();
        (decided >= n).then_some(())
    })
    .await
}

/// Scrapes until the controller has counted `n` `action`s done, and returns the
/// count then: the counter moves once the action returns, after its events
/// are out, so a watcher can see the event first.
pub async fn acted(server: &TestServer, action: &str, n: f64) -> f64 {
    let what = format!("the controller to have done {action:?} {n} times");
    super::eventually(&what, Duration::from_secs(10), || async {
        let m = scrape(server).await;
        let done: f64 =
            m.find("controller_actions_total", &[("action", action), ("status", "done")]).iter().map(|s| s.value).sum();
        (done >= n).then_some(done)
    })
    .await
}
