//! `eucora-scenario`: drives a running server (started with
//! `--simulator-connectors` and a short `--controller-interval`) through the
//! situations its dashboards and alerts describe, with the generated client:
//! a rollout promoted ring by ring and then rolled back by an operator, one
//! rolled back by the controller, one blocked by its gate, one waiting for
//! CAB, bad input, and an HTTP connector that fails until its breaker opens.
//! Used by `make e2e` (deploy/e2e/run). Bounded: every wait gives up after
//! 20 s.
//!
//! `eucora-scenario --target http://127.0.0.1:50051 [--token dev-carol]` (an admin's token)

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use eucora::auth::{Authenticated, Bearer};
use eucora::v1 as pb;
use eucora::v1::connector_service_client::ConnectorServiceClient;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use eucora::v1::ring_promotion_service_client::RingPromotionServiceClient;
use tonic::Code;

#[derive(Debug, Parser)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// Bearer token of an admin (the default is the development admin of a `--dev-auth` server).
    #[arg(long, env = "EUCORA_TOKEN", default_value = "dev-carol")]
    token: String,
}

struct Clients {
    deployments: DeploymentServiceClient<Authenticated>,
    promotions: RingPromotionServiceClient<Authenticated>,
    connectors: ConnectorServiceClient<Authenticated>,
}

fn evidence(risky: bool) -> pb::EvidencePack {
    pb::EvidencePack {
        artifact_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        sbom: (!risky).then(|| pb::SbomSummary { format: "cyclonedx".into(), component_count: 120 }),
        vulnerabilities: Some(pb::VulnerabilityCounts { critical: i32::from(risky), ..Default::default() }),
        requires_admin: risky,
        rollback_plan_present: !risky,
        rollback_tested: !risky,
        ..Default::default()
    }
}

/// A simulator connector of `connector_type` whose devices fail at `failure_rate`.
fn simulator(name: &str, connector_type: pb::ConnectorType, failure_rate: f64, device_count: i64) -> pb::Connector {
    pb::Connector {
        name: name.into(),
        connector_type: connector_type.into(),
        driver: pb::ConnectorDriver::Simulator.into(),
        enabled: true,
        simulator: Some(pb::SimulatorConfig { latency: None, failure_rate, device_count }),
        ..Default::default()
    }
}

fn new_deployment(
    app: &str,
    connector_type: pb::ConnectorType,
    connector: &str,
    risky: bool,
) -> pb::CreateDeploymentRequest {
    pb::CreateDeploymentRequest {
        request_id: format!("scenario-{app}"),
        app_name: app.into(),
        version: "1.0".into(),
        connector_type: connector_type.into(),
        connector_name: connector.into(),
        target_ring: pb::Ring::Global.into(),
        evidence_pack_id: "0b7e5a52-8c1f-4d0e-b1a3-6f2d9c4e7a10".into(),
        evidence: Some(evidence(risky)),
        ..Default::default()
    }
}

impl Clients {
    async fn create_and_start(&mut self, request: pb::CreateDeploymentRequest) -> anyhow::Result<String> {
        let created = self.deployments.create_deployment(request).await?.into_inner().deployment.context("created")?;
        let start = pb::StartDeploymentRequest { deployment_id: created.id.clone(), ..Default::default() };
        self.deployments.start_deployment(start).await?;
        Ok(created.id)
    }

    async fn add_connector(&mut self, connector: pb::Connector) -> anyhow::Result<()> {
        let request = pb::CreateConnectorRequest { connector: Some(connector), ..Default::default() };
        self.connectors.create_connector(request).await?;
        Ok(())
    }

    async fn get(&mut self, id: &str) -> anyhow::Result<pb::Deployment> {
        let request = pb::GetDeploymentRequest { deployment_id: id.into() };
        self.deployments.get_deployment(request).await?.into_inner().deployment.context("deployment")
    }

    /// Waits until `done` holds for the deployment.
    async fn until(
        &mut self,
        id: &str,
        what: &str,
        done: impl Fn(&pb::Deployment) -> bool,
    ) -> anyhow::Result<pb::Deployment> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let deployment = self.get(id).await?;
            if done(&deployment) {
                return Ok(deployment);
            }
            ensure!(Instant::now() < deadline, "deployment {id}: gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the current ring's devices, then promotes one ring.
    async fn promote_when_reported(&mut self, id: &str) -> anyhow::Result<pb::Deployment> {
        let deployment = self
            .until(id, "the current ring's outcomes", |d| {
                d.ring_progress.iter().any(|p| p.ring == d.current_ring && p.success_count > 0)
            })
            .await?;
        let gate = pb::EvaluatePromotionGateRequest { deployment_id: id.into() };
        self.promotions.evaluate_promotion_gate(gate).await?;
        let request = pb::PromoteDeploymentRequest {
            deployment_id: id.into(),
            from_ring: deployment.current_ring,
            ..Default::default()
        };
        self.promotions.promote_deployment(request).await?.into_inner().deployment.context("promoted")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channel = tonic::transport::Endpoint::from_shared(args.target)?.connect().await.context("connect")?;
    let bearer = Bearer::new(&args.token)?;
    let mut c = Clients {
        deployments: DeploymentServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        promotions: RingPromotionServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        connectors: ConnectorServiceClient::with_interceptor(channel, bearer),
    };

    // Promoted ring by ring to PILOT, then rolled back by an operator.
    let rollout = c.create_and_start(new_deployment("7zip", pb::ConnectorType::Sccm, "", false)).await?;
    c.promote_when_reported(&rollout).await?;
    let pilot = c.promote_when_reported(&rollout).await?;
    ensure!(pilot.current_ring() == pb::Ring::Pilot, "7zip reached {:?}", pilot.current_ring());
    let rollback = pb::RollbackDeploymentRequest {
        deployment_id: rollout.clone(),
        reason: "crash reports from PILOT".into(),
        ..Default::default()
    };
    c.promotions.rollback_deployment(rollback).await?;
    println!("scenario: 7zip promoted LAB → CANARY → PILOT, rolled back by an operator");

    // 10 % of 200 devices fail: the controller rolls it back by itself.
    c.add_connector(simulator("simulator-flaky", pb::ConnectorType::Jamf, 0.1, 200)).await?;
    let zoom = c.create_and_start(new_deployment("zoom", pb::ConnectorType::Jamf, "simulator-flaky", false)).await?;
    c.until(&zoom, "the controller's rollback", |d| d.status() == pb::DeploymentStatus::RolledBack).await?;
    println!("scenario: zoom rolled back by the controller");

    // A connector that reports no devices: LAB's gate blocks the promotion.
    c.add_connector(simulator("landscape-quiet", pb::ConnectorType::Landscape, 0.0, 0)).await?;
    let gimp =
        c.create_and_start(new_deployment("gimp", pb::ConnectorType::Landscape, "landscape-quiet", false)).await?;
    let promote =
        pb::PromoteDeploymentRequest { deployment_id: gimp, from_ring: pb::Ring::Lab.into(), ..Default::default() };
    match c.promotions.promote_deployment(promote).await {
        Err(status) if status.code() == Code::FailedPrecondition => {}
        other => bail!("gimp's promotion should be blocked by its gate: {other:?}"),
    }
    println!("scenario: gimp's promotion blocked by LAB's gate");

    // A risky one waits for CAB; bad input is refused.
    let chrome = c.deployments.create_deployment(new_deployment("chrome", pb::ConnectorType::Intune, "", true)).await?;
    let chrome = chrome.into_inner().deployment.context("chrome")?;
    ensure!(chrome.status() == pb::DeploymentStatus::AwaitingCab, "chrome is {:?}", chrome.status());
    let bad = c.deployments.create_deployment(pb::CreateDeploymentRequest::default()).await;
    ensure!(bad.is_err_and(|s| s.code() == Code::InvalidArgument), "bad input must be INVALID_ARGUMENT");
    println!("scenario: chrome waits for CAB; bad input refused");

    // An HTTP adapter that is not there: retried starts open its breaker.
    let down = pb::Connector {
        name: "ansible-down".into(),
        connector_type: pb::ConnectorType::Ansible.into(),
        driver: pb::ConnectorDriver::Http.into(),
        endpoint: "http://127.0.0.1:9".into(),
        enabled: true,
        call_timeout: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        ..Default::default()
    };
    c.add_connector(down).await?;
    let terraform =
        c.create_and_start(new_deployment("terraform", pb::ConnectorType::Ansible, "ansible-down", false)).await?;
    for _ in 0..2 {
        let retry = pb::StartDeploymentRequest { deployment_id: terraform.clone(), ..Default::default() };
        c.deployments.start_deployment(retry).await?;
    }
    let breaker = pb::GetCircuitBreakerRequest { connector_name: "ansible-down".into() };
    let breaker = c.connectors.get_circuit_breaker(breaker).await?.into_inner().breaker.context("breaker")?;
    ensure!(breaker.state() == pb::CircuitBreakerState::Open, "ansible-down's breaker is {:?}", breaker.state());
    println!("scenario: ansible-down's breaker is open");
    Ok(())
}
