//! Cost of recording through the catalog (OpenTelemetry SDK → Prometheus
//! bridge) against the same work through the `prometheus` crate directly:
//! one counter add and one histogram record with realistic labels, on one
//! and two threads, and rendering /metrics at 100, 1,000 and 10,000 series.
//! `cargo bench -p eucora-otel`; the ratios are what matter.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use eucora_otel::catalog::buckets;

const RINGS: [&str; 5] = ["lab", "canary", "pilot", "department", "global"];
use eucora_otel::{Catalog, MetricsPipeline, ServiceIdentity};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

const APPS: usize = 50;

fn pipeline() -> (MetricsPipeline, Catalog) {
    let identity = ServiceIdentity { name: "bench".into(), version: "0".into(), instance_id: "bench".into() };
    let pipeline = MetricsPipeline::new(&identity).expect("pipeline");
    let catalog = Catalog::new(&pipeline.meter());
    (pipeline, catalog)
}

struct Raw {
    registry: Registry,
    deployments: IntCounterVec,
    rpc: HistogramVec,
}

fn raw() -> Raw {
    let registry = Registry::new();
    let deployments = IntCounterVec::new(
        Opts::new("deployment_total", "Deployments entering a lifecycle status"),
        &["status", "ring", "app_name", "requires_cab"],
    )
    .unwrap();
    let rpc = HistogramVec::new(
        HistogramOpts::new("rpc_server_call_duration_seconds", "Duration of gRPC server calls")
            .buckets(buckets::RPC_SECONDS.to_vec()),
        &["rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code"],
    )
    .unwrap();
    registry.register(Box::new(deployments.clone())).unwrap();
    registry.register(Box::new(rpc.clone())).unwrap();
    Raw { registry, deployments, rpc }
}

fn app_names() -> Vec<String> {
    (0..APPS).map(|i| format!("app-{i:03}")).collect()
}

/// Runs `work(i)` `iters` times split over `threads` threads; returns wall time.
fn on_threads(threads: usize, iters: u64, work: impl Fn(u64) + Sync) -> Duration {
    let per_thread = iters / threads as u64;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let work = &work;
            scope.spawn(move || {
                for i in 0..per_thread {
                    work(i + t as u64);
                }
            });
        }
    });
    // Per operation across all threads: throughput, not latency.
    start.elapsed()
}

fn record(c: &mut Criterion) {
    let (_pipeline, catalog) = pipeline();
    let raw = raw();
    let apps = app_names();
    let mut group = c.benchmark_group("record");
    for threads in [1usize, 2] {
        group.bench_function(BenchmarkId::new("catalog_counter_add", threads), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |i| {
                    catalog.deployment_entered("approved", "canary", &apps[i as usize % APPS], true)
                })
            })
        });
        group.bench_function(BenchmarkId::new("prometheus_counter_inc", threads), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |i| {
                    raw.deployments.with_label_values(&["approved", "canary", &apps[i as usize % APPS], "true"]).inc()
                })
            })
        });
        group.bench_function(BenchmarkId::new("catalog_histogram_record", threads), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |i| {
                    catalog.rpc_call("eucora.v1.DeploymentService", "GetDeployment", 0, (i % 100) as f64 * 1e-4)
                })
            })
        });
        group.bench_function(BenchmarkId::new("prometheus_histogram_observe", threads), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |i| {
                    raw.rpc
                        .with_label_values(&["grpc", "eucora.v1.DeploymentService", "GetDeployment", "0"])
                        .observe((i % 100) as f64 * 1e-4)
                })
            })
        });
    }
    group.finish();
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(20);
    for series in [100usize, 1_000, 10_000] {
        let (pipeline, catalog) = pipeline();
        let raw = raw();
        // Counter series: 5 rings × 2 CAB values × N/10 apps.
        for i in 0..series {
            let app = format!("app-{:05}", i / 10);
            let ring = RINGS[i % 5];
            let cab = (i / 5) % 2 == 0;
            catalog.deployment_entered("approved", ring, &app, cab);
            raw.deployments.with_label_values(&["approved", ring, &app, if cab { "true" } else { "false" }]).inc();
        }
        group.bench_with_input(BenchmarkId::new("bridge", series), &series, |b, _| {
            b.iter(|| black_box(pipeline.render().unwrap().1.len()))
        });
        group.bench_with_input(BenchmarkId::new("prometheus", series), &series, |b, _| {
            b.iter(|| {
                let mut body = Vec::with_capacity(64 * 1024);
                TextEncoder::new().encode(&raw.registry.gather(), &mut body).unwrap();
                black_box(body.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, record, render);
criterion_main!(benches);
