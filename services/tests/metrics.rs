//! The telemetry contract on a real scrape: exact Prometheus names, types,
//! label sets, bucket boundaries and values after driving real RPCs, the
//! /metrics shim's HTTP behaviour, cardinality with many apps, and promtool.

mod common;

use std::time::Duration;

use common::exposition::Exposition;
use common::{APPROVER, Backend, assert_code, create, create_request, http_get, scrape, start_server};
use eucora::v1 as pb;
use tonic::Code;

/// Scrapes until `ready` holds: RPC outcomes are recorded when the response
/// body is released, which can trail the client's view by a moment.
async fn scrape_until(server: &common::TestServer, ready: impl Fn(&Exposition) -> bool) -> Exposition {
    common::eventually("metrics to reach the expected state", Duration::from_secs(2), || async {
        let exposition = scrape(server).await;
        ready(&exposition).then_some(exposition)
    })
    .await
}

fn bucket_bounds(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> Vec<String> {
    let mut bounds: Vec<_> =
        exposition.find(&format!("{name}_bucket"), labels).iter().map(|s| s.labels["le"].clone()).collect();
    bounds.sort_by(|a, b| a.parse::<f64>().unwrap().total_cmp(&b.parse::<f64>().unwrap()));
    bounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_scrape_matches_the_telemetry_contract() {
    let server = start_server(Backend::Sqlite).await;
    let mut client = server.deployments();

    // firefox: high risk, CAB, deploys, reaches compliance in LAB, completes.
    let firefox = create(&mut client, "m-firefox", "firefox", 70).await;
    let approve = pb::ApproveDeploymentRequest { deployment_id: firefox.id.clone(), ..Default::default() };
    assert_code(client.approve_deployment(approve.clone()).await, Code::PermissionDenied);
    server.deployments_as(APPROVER).approve_deployment(approve).await.unwrap();
    client
        .start_deployment(pb::StartDeploymentRequest { deployment_id: firefox.id.clone(), ..Default::default() })
        .await
        .unwrap();
    client
        .report_ring_outcome(pb::ReportRingOutcomeRequest {
            deployment_id: firefox.id.clone(),
            ring: pb::Ring::Lab.into(),
            success_count: 99,
            failure_count: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .complete_deployment(pb::CompleteDeploymentRequest { deployment_id: firefox.id.clone(), ..Default::default() })
        .await
        .unwrap();
    // vlc: low risk, fails before starting.
    let vlc = create(&mut client, "m-vlc", "vlc", 20).await;
    client
        .fail_deployment(pb::FailDeploymentRequest {
            deployment_id: vlc.id.clone(),
            reason: "bad package".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // A watch stream that the client ends.
    let watch = client.watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap();
    drop(watch);

    let m = scrape_until(&server, |m| {
        !m.find("rpc_server_calls_total", &[("rpc_method", "WatchDeployments")]).is_empty()
            && !m.find("rpc_server_calls_total", &[("rpc_method", "FailDeployment")]).is_empty()
    })
    .await;

    // Types of every family of DESIGN §4 recorded so far, with exact names.
    for (family, kind) in [
        ("deployment_total", "counter"),
        ("deployment_duration_seconds", "histogram"),
        ("deployment_time_to_compliance_seconds", "gauge"),
        ("risk_score_distribution", "histogram"),
        ("db_connection_pool_size", "gauge"),
        ("rpc_server_call_duration_seconds", "histogram"),
        ("rpc_server_calls_total", "counter"),
        ("target_info", "gauge"),
    ] {
        assert_eq!(m.type_of(family), Some(kind), "{family}: {:?}", m.types);
    }
    for family in m.types.keys() {
        assert!(!family.contains("_seconds_seconds") && !family.ends_with("_ratio"), "{family}");
        assert!(!family.contains("_total_total"), "{family}");
    }
    assert!(m.samples.iter().all(|s| !s.labels.contains_key("otel_scope_name")), "no scope label");
    assert!(m.samples.iter().all(|s| !s.labels.contains_key("otel_metric_overflow")));

    // deployment_total: one per status entered, with exactly the contract's labels.
    let firefox_labels =
        |status| [("app_name", "firefox"), ("ring", "lab"), ("requires_cab", "true"), ("status", status)];
    for status in ["pending", "awaiting_cab", "approved", "deploying", "completed"] {
        assert_eq!(m.value("deployment_total", &firefox_labels(status)), 1.0, "{status}");
    }
    for status in ["pending", "approved", "failed"] {
        assert_eq!(
            m.value("deployment_total", &[("app_name", "vlc"), ("requires_cab", "false"), ("status", status)]),
            1.0
        );
    }
    for sample in m.find("deployment_total", &[]) {
        let keys: Vec<_> = sample.labels.keys().map(String::as_str).collect();
        assert_eq!(keys, ["app_name", "requires_cab", "ring", "status"]);
    }

    // deployment_duration_seconds: observed once, for the completed deployment (vlc never deployed).
    assert_eq!(
        bucket_bounds(&m, "deployment_duration_seconds", &[("app_name", "firefox")]),
        ["1", "5", "10", "30", "60", "300", "600", "1800", "+Inf"]
    );
    assert_eq!(
        m.value(
            "deployment_duration_seconds_count",
            &[("app_name", "firefox"), ("ring", "lab"), ("status", "completed")]
        ),
        1.0
    );
    assert!(m.find("deployment_duration_seconds_count", &[("app_name", "vlc")]).is_empty());

    // risk_score_distribution: both creates, split by CAB.
    assert_eq!(
        bucket_bounds(&m, "risk_score_distribution", &[("requires_cab", "true")]),
        ["10", "25", "50", "75", "90", "100", "+Inf"]
    );
    // The server scored firefox 62 (admin, critical finding, no rollback plan) and vlc 7.
    assert_eq!((firefox.risk_score, vlc.risk_score), (62, 7));
    assert_eq!(m.value("risk_score_distribution_sum", &[("requires_cab", "true")]), 62.0);
    assert_eq!(m.value("risk_score_distribution_sum", &[("requires_cab", "false")]), 7.0);
    assert_eq!(m.value("risk_score_distribution_bucket", &[("requires_cab", "false"), ("le", "10")]), 1.0);
    assert_eq!(m.value("risk_score_distribution_bucket", &[("requires_cab", "true"), ("le", "50")]), 0.0);
    assert_eq!(m.value("risk_score_distribution_bucket", &[("requires_cab", "true"), ("le", "75")]), 1.0);

    // Compliance: firefox's LAB reached 0.99 with 100 devices.
    let compliance = m.value("deployment_time_to_compliance_seconds", &[("app_name", "firefox"), ("ring", "lab")]);
    assert!((0.0..60.0).contains(&compliance), "{compliance}");

    // Pool gauge: the three states.
    for state in ["idle", "in_use", "max"] {
        assert_eq!(m.find("db_connection_pool_size", &[("state", state)]).len(), 1, "{state}");
    }
    // SQLite's default pool.
    assert_eq!(m.value("db_connection_pool_size", &[("state", "max")]), 4.0);

    // RPC metrics: semantic-convention labels, failed and streaming calls included.
    let rpc = |method, code| {
        [
            ("rpc_system", "grpc"),
            ("rpc_service", "eucora.v1.DeploymentService"),
            ("rpc_method", method),
            ("rpc_grpc_status_code", code),
        ]
    };
    assert_eq!(m.value("rpc_server_calls_total", &rpc("CreateDeployment", "0")), 2.0);
    assert_eq!(m.value("rpc_server_calls_total", &rpc("ApproveDeployment", "7")), 1.0, "PERMISSION_DENIED");
    assert_eq!(m.value("rpc_server_calls_total", &rpc("ApproveDeployment", "0")), 1.0);
    assert_eq!(m.value("rpc_server_call_duration_seconds_count", &rpc("CompleteDeployment", "0")), 1.0);
    assert_eq!(m.find("rpc_server_calls_total", &[("rpc_method", "WatchDeployments")]).len(), 1);
    assert_eq!(bucket_bounds(&m, "rpc_server_call_duration_seconds", &rpc("CreateDeployment", "0")).len(), 15);

    // target_info carries the resource.
    let target = m.find("target_info", &[("service_name", "eucora")]);
    assert_eq!(target.len(), 1);
    assert!(target[0].labels.contains_key("service_instance_id") && target[0].labels.contains_key("service_version"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shim_speaks_http_like_prometheus_expects() {
    let server = start_server(Backend::Sqlite).await;
    create(&mut server.deployments(), "shim", "shim-app", 10).await;

    let (status, content_type, body) = http_get(&server, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let (status, alias_type, alias_body) = http_get(&server, "/api/v1/metrics/").await;
    assert_eq!((status, alias_type.as_str()), (200, content_type.as_str()));
    assert!(alias_body.contains("deployment_total{") && body.contains("deployment_total{"));

    assert_eq!(http_get(&server, "/healthz").await.0, 200);
    assert_eq!(http_get(&server, "/readyz").await.0, 200);
    assert_eq!(http_get(&server, "/nothing-here").await.0, 404);
    let client = reqwest::Client::new();
    let post = client.post(format!("http://{}/metrics", server.metrics_addr)).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 405);

    let gzipped = client
        .get(format!("http://{}/metrics", server.metrics_addr))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers().get("content-encoding").unwrap(), "gzip");
    let compressed = gzipped.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut text).unwrap();
    assert!(text.contains("# TYPE deployment_total counter"));
    assert!(compressed.len() < text.len());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_apps_do_not_overflow_into_otel_metric_overflow() {
    let server = start_server(Backend::Sqlite).await;
    let mut client = server.deployments();
    for i in 0..1000 {
        client.create_deployment(create_request(&format!("apps-{i}"), &format!("app-{i:04}"), 10)).await.unwrap();
    }
    let m = scrape(&server).await;
    let approved = m.find("deployment_total", &[("status", "approved")]);
    assert_eq!(approved.len(), 1000, "one series per app");
    assert!(approved.iter().all(|s| s.value == 1.0));
    assert!(m.samples.iter().all(|s| !s.labels.contains_key("otel_metric_overflow")));
    server.stop().await;
}

/// `promtool check metrics` (Debian package `prometheus`; `.ci/run` installs it)
/// finds nothing to report on a real scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_real_scrape() {
    let server = start_server(Backend::Sqlite).await;
    let mut client = server.deployments();
    let d = create(&mut client, "promtool", "promtool-app", 80).await;
    let approve = pb::ApproveDeploymentRequest { deployment_id: d.id, ..Default::default() };
    server.deployments_as(APPROVER).approve_deployment(approve).await.unwrap();
    let (_, _, body) = http_get(&server, "/metrics").await;
    server.stop().await;

    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool on PATH: apt-get install prometheus (.ci/run does)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && report.trim().is_empty(), "promtool says:\n{report}");
}

/// `deployments_current` is read from the store, so a restarted server says
/// the same; `promotion_gate_threshold` follows the policies; every gate
/// check evaluated counts in `promotion_gate_checks_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_deployments_thresholds_and_gate_checks_are_exported() {
    let dir = tempfile::tempdir().unwrap();
    let database = common::TestDatabase::sqlite_at(&dir.path().join("eucora.db"));
    let server = common::start_server_on(database, common::Options::default()).await;
    let mut client = server.deployments();
    create(&mut client, "cur-risky", "firefox", 70).await;
    let low = create(&mut client, "cur-low", "vlc", 10).await;
    client
        .start_deployment(pb::StartDeploymentRequest { deployment_id: low.id.clone(), ..Default::default() })
        .await
        .unwrap();
    let current = |status: &'static str| [("status", status), ("ring", "lab")];
    let m = scrape_until(&server, |m| {
        m.find("deployments_current", &current("deploying")).first().is_some_and(|s| s.value == 1.0)
    })
    .await;
    assert_eq!(m.value("deployments_current", &current("awaiting_cab")), 1.0);
    assert_eq!(m.value("deployments_current", &current("approved")), 0.0, "every pair exported, at 0 when empty");
    assert_eq!(m.find("deployments_current", &[]).len(), 40, "8 statuses × 5 rings");
    assert_eq!(m.value("promotion_gate_threshold", &[("ring", "canary")]), 0.98);
    assert_eq!(m.value("promotion_gate_threshold", &[("ring", "department")]), 0.99);

    // One evaluation of LAB's gate: each check counted by kind and verdict.
    let gate = pb::EvaluatePromotionGateRequest { deployment_id: low.id.clone() };
    server.promotions().evaluate_promotion_gate(gate).await.unwrap();
    let m = scrape(&server).await;
    let check = |check: &'static str, result: &'static str| [("ring", "lab"), ("check", check), ("result", result)];
    assert_eq!(m.value("promotion_gate_checks_total", &check("sample_size", "fail")), 1.0, "nothing reported yet");
    assert_eq!(m.value("promotion_gate_checks_total", &check("evidence_pack", "pass")), 1.0);

    // A new policy threshold shows up (a stricter one: a weaker one waits for a second admin).
    let policy = pb::RingPolicy { ring: pb::Ring::Canary.into(), min_success_rate: 0.99, ..Default::default() };
    let update = pb::UpdateRingPolicyRequest {
        policy: Some(policy),
        update_mask: Some(prost_types::FieldMask { paths: vec!["min_success_rate".into()] }),
        ..Default::default()
    };
    server.promotions().update_ring_policy(update).await.unwrap();
    scrape_until(&server, |m| {
        m.find("promotion_gate_threshold", &[("ring", "canary")]).first().is_some_and(|s| s.value == 0.99)
    })
    .await;

    // A restarted server counts from the store, not from zero.
    let database = server.shut_down().await;
    let server = common::start_server_on(database, common::Options::default()).await;
    let m = scrape_until(&server, |m| !m.find("deployments_current", &current("deploying")).is_empty()).await;
    assert_eq!(m.value("deployments_current", &current("deploying")), 1.0);
    assert_eq!(m.value("deployments_current", &current("awaiting_cab")), 1.0);
    server.stop().await;
}
