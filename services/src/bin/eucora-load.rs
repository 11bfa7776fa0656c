//! `eucora-load`: drives a running server with one RPC at a fixed concurrency
//! for a while and prints throughput and latency percentiles. Bounded in time
//! and count; meant for loopback targets.
//!
//! `eucora-load --rpc create --concurrency 64 --connections 4 --duration 10s`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use eucora::auth::{Authenticated, Bearer};
use eucora::v1 as pb;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Rpc {
    /// CreateDeployment with a fresh request id each call.
    Create,
    /// GetDeployment of one deployment.
    Get,
    /// ListDeployments, first page of 50.
    List,
    /// grpc.health.v1 Check: the server's own ceiling.
    Health,
}

/// Load generator for a running `eucora serve`.
#[derive(Debug, Parser)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    #[arg(long, value_enum, default_value_t = Rpc::Health)]
    rpc: Rpc,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to run (e.g. `10s`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Bearer token of an operator (the default is the development operator of a `--dev-auth` server).
    #[arg(long, env = "EUCORA_TOKEN", default_value = "dev-alice")]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel =
            Endpoint::from_shared(args.target.clone())?.tcp_nodelay(true).connect().await.context("connect")?;
        channels.push(channel);
    }
    let bearer = Bearer::new(&args.token)?;
    let seed = match args.rpc {
        Rpc::Get => {
            let mut client = DeploymentServiceClient::with_interceptor(channels[0].clone(), bearer.clone());
            Some(create(&mut client, "seed").await?.id)
        }
        _ => None,
    };
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.duration;
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|worker| {
            let channel = channels[worker % channels.len()].clone();
            let (rpc, seed, counter, errors) = (args.rpc, seed.clone(), counter.clone(), errors.clone());
            let bearer = bearer.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let call = Instant::now();
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if one_call(rpc, &channel, &bearer, seed.as_deref(), worker, n).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(call.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    println!(
        "rpc={:?} concurrency={} connections={} calls={} errors={} rate={:.0}/s p50={:?} p99={:?} max={:?}",
        args.rpc,
        args.concurrency,
        args.connections,
        latencies.len(),
        errors.load(Ordering::Relaxed),
        latencies.len() as f64 / elapsed,
        percentile(0.50).copied().unwrap_or_default(),
        percentile(0.99).copied().unwrap_or_default(),
        latencies.last().copied().unwrap_or_default(),
    );
    Ok(())
}

async fn create(
    client: &mut DeploymentServiceClient<Authenticated>,
    request_id: &str,
) -> anyhow::Result<pb::Deployment> {
    let request = pb::CreateDeploymentRequest {
        request_id: request_id.to_owned(),
        app_name: format!("load-{}", request_id.len() % 50),
        version: "1.0.0".into(),
        connector_type: pb::ConnectorType::Intune.into(),
        target_ring: pb::Ring::Global.into(),
        evidence_pack_id: "6f1c1f9e-3d2a-4c4b-9a57-0d8f7c9b1e11".into(),
        ..Default::default()
    };
    client.create_deployment(request).await?.into_inner().deployment.context("no deployment")
}

async fn one_call(
    rpc: Rpc,
    channel: &Channel,
    bearer: &Bearer,
    seed: Option<&str>,
    worker: usize,
    n: u64,
) -> anyhow::Result<()> {
    let deployments = || DeploymentServiceClient::with_interceptor(channel.clone(), bearer.clone());
    match rpc {
        Rpc::Create => {
            let id = format!("load-{}-{worker}-{n}", std::process::id());
            create(&mut deployments(), &id).await?;
        }
        Rpc::Get => {
            let request = pb::GetDeploymentRequest { deployment_id: seed.unwrap_or_default().to_owned() };
            deployments().get_deployment(request).await?;
        }
        Rpc::List => {
            deployments().list_deployments(pb::ListDeploymentsRequest::default()).await?;
        }
        Rpc::Health => {
            HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await?;
        }
    }
    Ok(())
}
