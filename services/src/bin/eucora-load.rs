//! `eucora-load`: drives a running server with one RPC, or with the mix of
//! calls a rollout makes, at a fixed concurrency for a while and prints
//! throughput, latency percentiles (HDR histogram), errors by gRPC code and,
//! given the server's pid, the server's CPU time per call and peak RSS.
//! Bounded in time; meant for loopback targets.
//!
//! `eucora-load --rpc create --concurrency 64 --connections 4 --duration 10s [--server-pid N] [--json]`
//!
//! With `--scrape URL` it measures what scraping /metrics costs the calls in
//! one run: the run alternates quiet phases with phases in which /metrics is
//! scraped every second, and reports the calls started in each apart. Two
//! separate runs would not do: on a shared VM, and with a database that grows
//! as creates go on, identical runs differ by more than a scrape costs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use eucora::auth::{Authenticated, Bearer};
use eucora::v1 as pb;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use eucora::v1::ring_promotion_service_client::RingPromotionServiceClient;
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
    /// ReportRingOutcome: each worker reports growing counts for a deployment of its own, started in LAB.
    Report,
    /// grpc.health.v1 Check: the server's own ceiling.
    Health,
    /// PromoteDeployment: each worker walks deployments through the rings as
    /// `rollout` does; the figures are those of the promotions.
    Promote,
    /// The calls of whole rollouts, each worker driving one deployment at a
    /// time: create, start, then in each ring read until the connector's
    /// outcome is in, report it again (a second agent), promote; at GLOBAL,
    /// complete. With the simulator's defaults that weighs, per deployment,
    /// 1 create, 1 start, 5 reports, 4 promotions, 1 completion and the reads
    /// it takes; the figures are of all calls, and each RPC's are listed.
    Rollout,
}

impl Rpc {
    /// Whether each worker drives rollouts rather than repeating one call.
    fn drives_rollouts(self) -> bool {
        matches!(self, Rpc::Promote | Rpc::Rollout)
    }
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
    /// Bearer token of a reporter, for `report` (the default is the development agent).
    #[arg(long, env = "EUCORA_REPORTER_TOKEN", default_value = "dev-agent")]
    reporter_token: String,
    /// The server's process id (same machine): report its CPU seconds per call and peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    json: bool,
    /// A /metrics URL to scrape every second in every other phase (see `--scrape-phase`).
    #[arg(long)]
    scrape: Option<String>,
    /// Length of the quiet and the scraped phases that alternate under `--scrape`, whole seconds.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    scrape_phase: Duration,
}

/// Which phase of a `--scrape` run an instant falls in.
#[derive(Clone, Copy)]
struct Phases {
    started: Instant,
    length: Duration,
}

impl Phases {
    /// Phases alternate, quiet first. The quiet ones alternate between two
    /// groups too, whose difference is the noise any difference of the scraped
    /// phases is to be read against.
    const QUIET_A: usize = 0;
    const QUIET_B: usize = 1;
    const SCRAPED: usize = 2;

    /// The group of the phase `at` falls in.
    fn group(self, at: Instant) -> usize {
        let phase = at.duration_since(self.started).as_nanos() / self.length.as_nanos();
        match (phase % 2, phase / 2 % 2) {
            (1, _) => Self::SCRAPED,
            (_, 0) => Self::QUIET_A,
            _ => Self::QUIET_B,
        }
    }
}

/// What one worker saw.
#[derive(Default)]
struct Seen {
    /// Latencies by RPC (one entry unless the worker drives rollouts).
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    errors: BTreeMap<String, u64>,
    /// The first message of each code, to tell what went wrong.
    examples: BTreeMap<String, String>,
    /// Under `--scrape`: latencies of the calls started in each group of phases.
    by_phase: [Vec<Duration>; 3],
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.scrape_phase >= Duration::from_secs(1) && args.scrape_phase.subsec_nanos() == 0,
        "--scrape-phase must be whole seconds"
    );
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel =
            Endpoint::from_shared(args.target.clone())?.tcp_nodelay(true).connect().await.context("connect")?;
        channels.push(channel);
    }
    let bearer = Bearer::new(&args.token)?;
    let reporter = Bearer::new(&args.reporter_token)?;
    let workers = args.concurrency.max(1);
    // What each worker calls on: one deployment for all (get), one each (report).
    // What each worker calls about: one deployment for all (get), one each
    // with the LAB success count to report (report).
    let seeds: Vec<Option<(String, i64)>> = match args.rpc {
        Rpc::Get => {
            let mut client = DeploymentServiceClient::with_interceptor(channels[0].clone(), bearer.clone());
            let seed = create(&mut client, "seed").await?.id;
            vec![Some((seed, 0)); workers]
        }
        Rpc::Report => {
            let mut client = DeploymentServiceClient::with_interceptor(channels[0].clone(), bearer.clone());
            let mut seeds = Vec::new();
            for worker in 0..workers {
                let id = format!("load-report-{}-{worker}", std::process::id());
                let created = create(&mut client, &id).await?;
                let start = pb::StartDeploymentRequest { deployment_id: created.id.clone(), ..Default::default() };
                client.start_deployment(start).await.context("starting a deployment to report on")?;
                seeds.push(Some((created.id.clone(), settled_lab_count(&mut client, &created.id).await?)));
            }
            seeds
        }
        _ => vec![None; workers],
    };
    let cpu_before = args.server_pid.map(cpu_seconds).transpose()?;
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.duration;
    let phases = args.scrape.as_ref().map(|_| Phases { started, length: args.scrape_phase });
    let scraper = args.scrape.clone().zip(phases).map(|(url, phases)| tokio::spawn(scrape(url, phases, deadline)));
    let tasks: Vec<_> = seeds
        .into_iter()
        .enumerate()
        .map(|(worker, seed)| {
            let channel = channels[worker % channels.len()].clone();
            let (rpc, counter) = (args.rpc, counter.clone());
            // Outcomes come from a reporter identity; everything else from the operator.
            let bearer = if matches!(rpc, Rpc::Report) { reporter.clone() } else { bearer.clone() };
            let reporter = reporter.clone();
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let mut rollout = Rollout::default();
                loop {
                    let begun = Instant::now();
                    if begun >= deadline {
                        break;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let (name, took, result) = if rpc.drives_rollouts() {
                        rollout.step(&channel, &bearer, &reporter, worker, n).await
                    } else {
                        let call = Instant::now();
                        let result = one_call(rpc, &channel, &bearer, seed.as_ref(), worker, n).await;
                        (rpc.name(), call.elapsed(), result)
                    };
                    if let Err(status) = result {
                        let code = format!("{name} {:?}", status.code());
                        seen.examples.entry(code.clone()).or_insert_with(|| status.message().to_owned());
                        *seen.errors.entry(code).or_default() += 1;
                    }
                    seen.latencies.entry(name).or_default().push(took);
                    if let Some(phases) = phases {
                        seen.by_phase[phases.group(begun)].push(took);
                    }
                }
                seen
            })
        })
        .collect();
    let new_histogram = || Histogram::new_with_bounds(1, 60_000_000, 3);
    let mut by_rpc: BTreeMap<&'static str, Histogram> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut examples: BTreeMap<String, String> = BTreeMap::new();
    let mut by_phase = [new_histogram()?, new_histogram()?, new_histogram()?];
    for task in tasks {
        let seen = task.await?;
        for (histogram, latencies) in by_phase.iter_mut().zip(seen.by_phase) {
            record(histogram, latencies);
        }
        for (name, latencies) in seen.latencies {
            record(by_rpc.entry(name).or_insert(new_histogram()?), latencies);
        }
        for (code, n) in seen.errors {
            *errors.entry(code).or_default() += n;
        }
        for (code, message) in seen.examples {
            examples.entry(code).or_insert(message);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let scrapes = match scraper {
        Some(scraper) => Some(scraper.await??),
        None => None,
    };
    // The headline: the promotions of `promote`, every call otherwise.
    let mut histogram = new_histogram()?;
    for (name, h) in &by_rpc {
        if !matches!(args.rpc, Rpc::Promote) || *name == "promote" {
            histogram.add(h)?;
        }
    }
    let calls = histogram.len();
    let all_calls: u64 = by_rpc.values().map(Histogram::len).sum();
    let cpu = match (args.server_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
        _ => None,
    };
    let peak_rss_mib = args.server_pid.map(peak_rss_mib).transpose()?;
    let ms = |q: f64| ms_at(&histogram, q);
    let scrape_report = scrapes.map(|took: Vec<Duration>| {
        let phase =
            |h: &Histogram| serde_json::json!({"calls": h.len(), "p50_ms": ms_at(h, 0.5), "p99_ms": ms_at(h, 0.99)});
        let change = |from: &Histogram, to: &Histogram| (ms_at(to, 0.99) / ms_at(from, 0.99).max(0.001) - 1.0) * 100.0;
        let [quiet_a, quiet_b, scraped] = &by_phase;
        let mut quiet = quiet_a.clone();
        quiet.add(quiet_b).expect("histograms of the same bounds");
        serde_json::json!({
            "phase_seconds": args.scrape_phase.as_secs(),
            "scrapes": took.len(),
            "scrape_ms_mean": took.iter().sum::<Duration>().as_secs_f64() * 1000.0 / took.len().max(1) as f64,
            "quiet": phase(&quiet),
            "scraped": phase(scraped),
            "p99_change_percent": change(&quiet, scraped),
            "quiet_p99_spread_percent": change(quiet_a, quiet_b).abs(),
        })
    });
    let report = serde_json::json!({
        "rpc": format!("{:?}", args.rpc).to_lowercase(),
        "concurrency": workers,
        "connections": args.connections,
        "seconds": elapsed,
        "calls": calls,
        "rate": calls as f64 / elapsed,
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "max_ms": histogram.max() as f64 / 1000.0,
        "errors": errors,
        "error_examples": examples,
        "server_cpu_seconds": cpu,
        // Over every call the run made (in a rollout mix, the reads and reports too).
        "server_cpu_us_per_call": cpu.map(|cpu| cpu * 1e6 / all_calls.max(1) as f64),
        "server_peak_rss_mib": peak_rss_mib,
        "by_rpc": by_rpc.iter().map(|(name, h)| {
            (name.to_string(), serde_json::json!({
                "calls": h.len(), "rate": h.len() as f64 / elapsed, "p50_ms": ms_at(h, 0.5), "p99_ms": ms_at(h, 0.99),
            }))
        }).collect::<serde_json::Map<_, _>>(),
        "scrape": scrape_report,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "rpc={} concurrency={workers} connections={} calls={calls} rate={:.0}/s p50={:.2}ms p99={:.2}ms max={:.2}ms errors={} cpu/call={} peak_rss={}",
            report["rpc"].as_str().unwrap_or_default(),
            args.connections,
            report["rate"].as_f64().unwrap_or_default(),
            ms(0.50),
            ms(0.99),
            histogram.max() as f64 / 1000.0,
            report["errors"],
            cpu.map_or("-".into(), |cpu| format!("{:.0}us", cpu * 1e6 / all_calls.max(1) as f64)),
            peak_rss_mib.map_or("-".into(), |rss| format!("{rss:.1}MiB")),
        );
        if args.rpc.drives_rollouts() {
            for (name, figures) in report["by_rpc"].as_object().into_iter().flatten() {
                println!("  {name}: {figures}");
            }
        }
        if !report["scrape"].is_null() {
            println!("  scrape: {}", report["scrape"]);
        }
    }
    Ok(())
}

type Histogram = hdrhistogram::Histogram<u64>;

/// Adds `latencies` to `histogram`, in microseconds.
fn record(histogram: &mut Histogram, latencies: Vec<Duration>) {
    for latency in latencies {
        histogram.saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }
}

/// The latency at quantile `q`, in milliseconds.
fn ms_at(histogram: &Histogram, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64 / 1000.0
}

/// Scrapes `url` every second of the scraped phases until `deadline`, and
/// returns how long each scrape took. A failed scrape fails the run: its
/// comparison would not be of what it says.
async fn scrape(url: String, phases: Phases, deadline: Instant) -> anyhow::Result<Vec<Duration>> {
    let client = reqwest::Client::new();
    let mut ticks = tokio::time::interval_at(phases.started.into(), Duration::from_secs(1));
    let mut took = Vec::new();
    loop {
        let tick = ticks.tick().await.into_std();
        if tick >= deadline {
            return Ok(took);
        }
        if phases.group(tick) == Phases::SCRAPED {
            let begun = Instant::now();
            let body = client.get(&url).send().await?.error_for_status()?.bytes().await?;
            anyhow::ensure!(!body.is_empty(), "an empty scrape of {url}");
            took.push(begun.elapsed());
        }
    }
}

/// LAB's success count once the connector (a simulator reports on its own)
/// has reported, or 0 if it does not within a second.
async fn settled_lab_count(client: &mut DeploymentServiceClient<Authenticated>, id: &str) -> anyhow::Result<i64> {
    for _ in 0..50 {
        let get = pb::GetDeploymentRequest { deployment_id: id.to_owned() };
        let deployment = client.get_deployment(get).await?.into_inner().deployment.context("no deployment")?;
        let lab = deployment.ring_progress.iter().find(|p| p.ring() == pb::Ring::Lab).map_or(0, |p| p.success_count);
        if lab > 0 {
            return Ok(lab);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(0)
}

/// CPU time (user and system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading the server's /proc stat")?;
    // Fields after the command name (which may hold spaces): state is the 3rd, utime the 14th, stime the 15th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).context("a /proc stat line")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields.get(11).context("utime")?.parse::<u64>()? + fields.get(12).context("stime")?.parse::<u64>()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Ok(ticks as f64 / 100.0)
}

/// The process's peak resident set (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the server's /proc status")?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).context("VmHWM in /proc status")?;
    let kib: f64 = line.split_whitespace().nth(1).context("VmHWM value")?.parse()?;
    Ok(kib / 1024.0)
}

async fn create(
    client: &mut DeploymentServiceClient<Authenticated>,
    request_id: &str,
) -> anyhow::Result<pb::Deployment> {
    let request = create_request(request_id, 0);
    client.create_deployment(request).await?.into_inner().deployment.context("no deployment")
}

/// A create for one of a thousand apps (chosen by `n`), as in a fleet where
/// each app is deployed a few times a month: an app's history, which every
/// create reads for the risk factors, stays the size it would be.
fn create_request(request_id: &str, n: u64) -> pb::CreateDeploymentRequest {
    create_request_for(request_id, &format!("load-app-{}", n % 1000))
}

fn create_request_for(request_id: &str, app_name: &str) -> pb::CreateDeploymentRequest {
    pb::CreateDeploymentRequest {
        request_id: request_id.to_owned(),
        app_name: app_name.to_owned(),
        version: "1.0.0".into(),
        connector_type: pb::ConnectorType::Intune.into(),
        target_ring: pb::Ring::Global.into(),
        evidence_pack_id: "6f1c1f9e-3d2a-4c4b-9a57-0d8f7c9b1e11".into(),
        site_class: pb::SiteClass::Online.into(),
        // Complete, clean evidence: low risk, so that deployments start without CAB.
        evidence: Some(pb::EvidencePack {
            artifact_sha256: "ab".repeat(32),
            sbom: Some(pb::SbomSummary { format: "cyclonedx".into(), component_count: 42 }),
            vulnerabilities: Some(pb::VulnerabilityCounts::default()),
            rollback_plan_present: true,
            rollback_tested: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One call of `rpc`; `seed` is the deployment it is about (get, report).
async fn one_call(
    rpc: Rpc,
    channel: &Channel,
    bearer: &Bearer,
    seed: Option<&(String, i64)>,
    worker: usize,
    n: u64,
) -> Result<(), tonic::Status> {
    let deployments = || DeploymentServiceClient::with_interceptor(channel.clone(), bearer.clone());
    match rpc {
        Rpc::Create => {
            let id = format!("load-{}-{worker}-{n}", std::process::id());
            deployments().create_deployment(create_request(&id, n)).await?;
        }
        Rpc::Report => {
            let request = pb::ReportRingOutcomeRequest {
                deployment_id: seed.map(|(id, _)| id.clone()).unwrap_or_default(),
                ring: pb::Ring::Lab.into(),
                // The count the ring has already, each time: a valid report (counts never drop,
                // and stay within the ring's devices), recorded and audited like any other.
                success_count: seed.map_or(0, |(_, count)| *count),
                ..Default::default()
            };
            deployments().report_ring_outcome(request).await?;
        }
        Rpc::Get => {
            let request =
                pb::GetDeploymentRequest { deployment_id: seed.map(|(id, _)| id.clone()).unwrap_or_default() };
            deployments().get_deployment(request).await?;
        }
        Rpc::List => {
            deployments().list_deployments(pb::ListDeploymentsRequest::default()).await?;
        }
        Rpc::Health => {
            HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await?;
        }
        Rpc::Promote | Rpc::Rollout => unreachable!("rollouts are driven by Rollout::step"),
    }
    Ok(())
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::Create => "create",
            Rpc::Get => "get",
            Rpc::List => "list",
            Rpc::Report => "report",
            Rpc::Health => "health",
            Rpc::Promote => "promote",
            Rpc::Rollout => "rollout",
        }
    }
}

/// One worker's deployment on its way through the rings.
#[derive(Default)]
struct Rollout {
    deployment: Option<pb::Deployment>,
    started: bool,
    reported: bool,
}

impl Rollout {
    /// Makes the next call of the rollout: which RPC, how long it took, how it went.
    /// A failed call abandons the deployment; the next step creates another.
    async fn step(
        &mut self,
        channel: &Channel,
        operator_token: &Bearer,
        reporter: &Bearer,
        worker: usize,
        n: u64,
    ) -> (&'static str, Duration, Result<(), tonic::Status>) {
        let mut operator = DeploymentServiceClient::with_interceptor(channel.clone(), operator_token.clone());
        let call = Instant::now();
        let (name, result) = match self.deployment.clone() {
            None => {
                // An app of its own, so that the risk model's frequency factor stays low.
                let id = format!("rollout-{}-{worker}-{n}", std::process::id());
                let created = operator.create_deployment(create_request_for(&id, &id)).await;
                (
                    "create",
                    created.map(|r| *self = Rollout { deployment: r.into_inner().deployment, ..Rollout::default() }),
                )
            }
            Some(deployment) if !self.started => {
                let request = pb::StartDeploymentRequest { deployment_id: deployment.id, ..Default::default() };
                let started = operator.start_deployment(request).await;
                ("start", started.map(|r| (self.deployment, self.started) = (r.into_inner().deployment, true)))
            }
            Some(deployment) => {
                let ring = deployment.current_ring();
                let progress = deployment.ring_progress.iter().find(|p| p.ring() == ring).cloned().unwrap_or_default();
                if progress.success_count + progress.failure_count == 0 {
                    // The connector's outcome is not in yet: read again shortly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let call = Instant::now();
                    let read = operator.get_deployment(pb::GetDeploymentRequest { deployment_id: deployment.id }).await;
                    let took = call.elapsed();
                    let result = read.map(|r| self.deployment = r.into_inner().deployment);
                    return self.settle("get", took, result);
                } else if !self.reported {
                    let request = pb::ReportRingOutcomeRequest {
                        deployment_id: deployment.id,
                        ring: ring.into(),
                        success_count: progress.success_count,
                        failure_count: progress.failure_count,
                        rollback_validated: ring == pb::Ring::Lab,
                        ..Default::default()
                    };
                    let mut reporter = DeploymentServiceClient::with_interceptor(channel.clone(), reporter.clone());
                    let reported = reporter.report_ring_outcome(request).await;
                    ("report", reported.map(|r| (self.deployment, self.reported) = (r.into_inner().deployment, true)))
                } else if ring == deployment.target_ring() {
                    let request = pb::CompleteDeploymentRequest { deployment_id: deployment.id, ..Default::default() };
                    ("complete", operator.complete_deployment(request).await.map(|_| self.deployment = None))
                } else {
                    let request = pb::PromoteDeploymentRequest {
                        deployment_id: deployment.id,
                        from_ring: ring.into(),
                        ..Default::default()
                    };
                    let mut promotions =
                        RingPromotionServiceClient::with_interceptor(channel.clone(), operator_token.clone());
                    let promoted = promotions.promote_deployment(request).await;
                    ("promote", promoted.map(|r| (self.deployment, self.reported) = (r.into_inner().deployment, false)))
                }
            }
        };
        self.settle(name, call.elapsed(), result)
    }

    fn settle(
        &mut self,
        name: &'static str,
        took: Duration,
        result: Result<(), tonic::Status>,
    ) -> (&'static str, Duration, Result<(), tonic::Status>) {
        if result.is_err() {
            self.deployment = None;
        }
        (name, took, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_alternate_quiet_and_scraped_and_the_quiet_ones_alternate_halves() {
        let started = Instant::now();
        let phases = Phases { started, length: Duration::from_secs(2) };
        let groups: Vec<usize> =
            (0..12).map(|second| phases.group(started + Duration::from_millis(second * 1000 + 500))).collect();
        let (a, b, s) = (Phases::QUIET_A, Phases::QUIET_B, Phases::SCRAPED);
        assert_eq!(groups, [a, a, s, s, b, b, s, s, a, a, s, s]);
    }
}
