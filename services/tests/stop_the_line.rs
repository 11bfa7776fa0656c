//! Stop the line from alerts: Alertmanager's webhook payloads (version 4, as
//! Alertmanager sends them) pause the deploying deployments a firing alert
//! is about, and only those, naming the alert in each pause; a resolved
//! alert resumes nothing unless its rule says so, and then only its own
//! pauses. The webhook wants its bearer token.

mod common;

use common::{Backend, OPERATOR, Options, TestServer, create_request, events_of, scrape, start_server_with};
use eucora::v1 as pb;
use eucora_services::alerts::{Rule, Scope, StopTheLineOptions, default_rules};
use serde_json::json;

const TOKEN: &str = "am-webhook-secret";

async fn server_with(rules: Vec<Rule>) -> TestServer {
    let stop_the_line = Some(StopTheLineOptions { token: TOKEN.into(), rules });
    start_server_with(Backend::Sqlite, Options { stop_the_line, ..Default::default() }).await
}

/// A deployment of `app` to GLOBAL, started (deploying in LAB).
async fn deploying(server: &TestServer, request_id: &str, app: &str) -> pb::Deployment {
    let mut client = server.deployments_as(OPERATOR);
    let request =
        pb::CreateDeploymentRequest { target_ring: pb::Ring::Global.into(), ..create_request(request_id, app, 20) };
    let created = client.create_deployment(request).await.unwrap().into_inner().deployment.unwrap();
    let start = pb::StartDeploymentRequest { deployment_id: created.id, ..Default::default() };
    client.start_deployment(start).await.unwrap().into_inner().deployment.unwrap()
}

/// One alert group as Alertmanager posts it to a webhook receiver.
fn payload(status: &str, labels: serde_json::Value, fingerprint: &str) -> String {
    let ends = if status == "firing" { "0001-01-01T00:00:00Z" } else { "2026-12-03T11:05:00.000Z" };
    json!({
        "version": "4",
        "groupKey": "{}/{severity=\"critical\"}:{alertname=\"EucoraChangeFailureRatioHigh\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "eucora-stop-the-line",
        "groupLabels": { "alertname": labels["alertname"] },
        "commonLabels": labels,
        "commonAnnotations": { "summary": "Rollouts fail more than 10 % of the time" },
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": { "summary": "Rollouts fail more than 10 % of the time", "runbook_url": "https://runbooks/x" },
            "startsAt": "2026-12-03T10:00:00.000Z",
            "endsAt": ends,
            "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
            "fingerprint": fingerprint
        }]
    })
    .to_string()
}

/// Posts `body` to the webhook with `token`; the status and the body of the answer.
async fn post(server: &TestServer, token: Option<&str>, body: String) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/api/v1/alertmanager", server.metrics_addr))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST");
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn is_paused(server: &TestServer, deployment: &pb::Deployment) -> bool {
    let request = pb::GetDeploymentRequest { deployment_id: deployment.id.clone() };
    server.deployments().get_deployment(request).await.unwrap().into_inner().deployment.unwrap().paused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_pauses_the_deployments_it_names_and_its_resolution_resumes_nothing() {
    let server = server_with(default_rules()).await;
    let firefox = deploying(&server, "ff", "firefox").await;
    let chrome = deploying(&server, "ch", "chrome").await;
    let not_started =
        server.deployments_as(OPERATOR).create_deployment(create_request("ff-2", "firefox", 20)).await.unwrap();
    let not_started = not_started.into_inner().deployment.unwrap();

    let critical = json!({ "alertname": "EucoraChangeFailureRatioHigh", "severity": "critical", "app_name": "firefox", "job": "eucora" });
    let firing = payload("firing", critical.clone(), "c5e3fa1b2d4e6f70");
    assert_eq!(post(&server, None, firing.clone()).await.0, 401);
    assert_eq!(post(&server, Some("wrong"), firing.clone()).await.0, 401);
    assert_eq!(post(&server, Some(TOKEN), "{\"alerts\": 7}".into()).await.0, 400);

    assert_eq!(post(&server, Some(TOKEN), firing.clone()).await, (200, r#"{"paused":1,"resumed":0}"#.into()));
    assert!(is_paused(&server, &firefox).await);
    assert!(!is_paused(&server, &chrome).await, "another app");
    let events = events_of(&mut server.deployments(), &firefox.id).await;
    let pause = events.last().unwrap();
    assert_eq!(pause.kind(), pb::DeploymentEventKind::Paused);
    assert_eq!(pause.actor, "alertmanager");
    assert_eq!(
        pause.reason,
        "stop the line: alert EucoraChangeFailureRatioHigh is firing: Rollouts fail more than 10 % of the time"
    );
    let untouched = events_of(&mut server.deployments(), &not_started.id).await;
    assert!(untouched.iter().all(|e| e.kind() != pb::DeploymentEventKind::Paused), "not deploying: nothing to stop");

    // Alertmanager repeats a firing group: nothing more happens.
    assert_eq!(post(&server, Some(TOKEN), firing).await.1, r#"{"paused":0,"resumed":0}"#);
    // A warning does not stop the line.
    let warning = json!({ "alertname": "EucoraCabBacklogHigh", "severity": "warning" });
    assert_eq!(post(&server, Some(TOKEN), payload("firing", warning, "0a0b")).await.1, r#"{"paused":0,"resumed":0}"#);
    // Resolved: people resume, not the alert.
    assert_eq!(
        post(&server, Some(TOKEN), payload("resolved", critical, "c5e3fa1b2d4e6f70")).await.1,
        r#"{"paused":0,"resumed":0}"#
    );
    assert!(is_paused(&server, &firefox).await);

    let m = scrape(&server).await;
    assert_eq!(m.value("stop_the_line_pauses_total", &[("alertname", "EucoraChangeFailureRatioHigh")]), 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_that_resumes_on_resolve_resumes_only_its_own_pauses() {
    let rule = Rule {
        matchers: [("alertname".to_owned(), "SiteOutage".to_owned())].into(),
        scope: Scope::All,
        resume_on_resolve: true,
    };
    let server = server_with(vec![rule]).await;
    let firefox = deploying(&server, "ff", "firefox").await;
    let chrome = deploying(&server, "ch", "chrome").await;
    let by_hand = deploying(&server, "ed", "edge").await;
    let pause = pb::PauseDeploymentRequest {
        deployment_id: by_hand.id.clone(),
        reason: "checking".into(),
        ..Default::default()
    };
    server.deployments_as(OPERATOR).pause_deployment(pause).await.unwrap();

    // Scope "all": the alert's app_name label does not narrow it.
    let outage = json!({ "alertname": "SiteOutage", "severity": "page", "app_name": "firefox" });
    let answer = post(&server, Some(TOKEN), payload("firing", outage.clone(), "f00d")).await;
    assert_eq!(answer, (200, r#"{"paused":2,"resumed":0}"#.into()));
    assert!(is_paused(&server, &firefox).await && is_paused(&server, &chrome).await);

    let answer = post(&server, Some(TOKEN), payload("resolved", outage, "f00d")).await;
    assert_eq!(answer.1, r#"{"paused":0,"resumed":2}"#);
    assert!(!is_paused(&server, &firefox).await && !is_paused(&server, &chrome).await);
    assert!(is_paused(&server, &by_hand).await, "paused by a person: stays paused");
    let resumed = events_of(&mut server.deployments(), &chrome.id).await;
    assert_eq!(resumed.last().unwrap().reason, "stop the line: alert SiteOutage resolved");

    let m = scrape(&server).await;
    assert_eq!(m.value("stop_the_line_pauses_total", &[("alertname", "other")]), 2.0, "not a shipped alert");
    server.stop().await;
}
