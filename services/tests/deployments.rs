//! End-to-end tests of DeploymentService through the generated client, on
//! SQLite and on the machine's PostgreSQL.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{
    APPROVER, Backend, OPERATOR, REPORTER, assert_code, create, create_request, events_of, list_all_events,
    start_server, start_server_with, started,
};
use eucora::v1 as pb;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use eucora::v1::watch_deployments_response::Payload;
use tokio_stream::StreamExt;
use tonic::{Code, Request};
use tonic_types::StatusExt;

on_every_backend!(
    whole_lifecycle_with_cab_and_audit_trail,
    create_is_idempotent_on_request_id,
    pagination_walks_every_page_newest_first,
    concurrent_mutations_with_one_etag_have_one_winner,
    concurrent_mutations_without_etag_all_apply,
    watch_streams_every_later_event_in_order,
    a_watch_resumes_from_a_sequence_and_list_events_pages_the_log,
    bad_input_gets_the_right_code,
    shutdown_ends_watch_streams_cleanly,
);

async fn whole_lifecycle_with_cab_and_audit_trail(backend: Backend) {
    let server = start_server(backend).await;
    // Each step as the identity whose role it needs: alice operates, bob
    // approves, the agent reports; the audit trail names each.
    let mut client = server.deployments_as(OPERATOR);
    let mut agent = server.deployments_as(REPORTER);

    let mut request = Request::new(create_request("life-1", "firefox", 70));
    request.metadata_mut().insert("x-correlation-id", "corr-life".parse().unwrap());
    let response = client.create_deployment(request).await.unwrap();
    assert_eq!(response.metadata().get("x-correlation-id").unwrap(), "corr-life", "echoed back");
    let created = response.into_inner().deployment.unwrap();
    assert_eq!(created.status(), pb::DeploymentStatus::AwaitingCab);
    assert!(created.requires_cab_approval);
    assert_eq!(created.current_ring(), pb::Ring::Lab);
    assert_eq!(created.correlation_id, "corr-life");

    let approve = pb::ApproveDeploymentRequest {
        deployment_id: created.id.clone(),
        reason: "CAB-42".into(),
        etag: created.etag.clone(),
    };
    assert_eq!(created.submitter, "alice", "the authenticated caller submits");
    let denied = assert_code(client.approve_deployment(approve.clone()).await, Code::PermissionDenied);
    assert!(denied.message().contains("approver role"), "{}", denied.message());
    let approved =
        server.deployments_as(APPROVER).approve_deployment(approve).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(approved.status(), pb::DeploymentStatus::Approved);
    assert_eq!(approved.cab_approver, "bob");
    assert_ne!(approved.etag, created.etag);

    let started = client
        .start_deployment(pb::StartDeploymentRequest { deployment_id: created.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(started.status(), pb::DeploymentStatus::Deploying);
    assert!(started.deploy_start_time.is_some());
    assert_eq!(started.ring_progress.len(), 1);

    let report = |success, failure| pb::ReportRingOutcomeRequest {
        deployment_id: created.id.clone(),
        ring: pb::Ring::Lab.into(),
        success_count: success,
        failure_count: failure,
        ..Default::default()
    };
    agent.report_ring_outcome(report(40, 1)).await.unwrap();
    let reported = agent.report_ring_outcome(report(97, 3)).await.unwrap().into_inner().deployment.unwrap();
    let lab = &reported.ring_progress[0];
    assert_eq!((lab.success_count, lab.failure_count), (97, 3));
    assert!((lab.success_rate - 0.97).abs() < 1e-9);
    assert_code(agent.report_ring_outcome(report(90, 3)).await, Code::FailedPrecondition);
    let unchanged = agent.report_ring_outcome(report(97, 3)).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(unchanged.etag, reported.etag, "a retried report changes nothing");

    let completed = client
        .complete_deployment(pb::CompleteDeploymentRequest { deployment_id: created.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(completed.status(), pb::DeploymentStatus::Completed);
    assert!(completed.end_time.is_some());
    let again = client
        .fail_deployment(pb::FailDeploymentRequest {
            deployment_id: created.id.clone(),
            reason: "late".into(),
            ..Default::default()
        })
        .await;
    assert_code(again, Code::FailedPrecondition);

    let fetched = client
        .get_deployment(pb::GetDeploymentRequest { deployment_id: created.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let fetched = fetched.deployment.unwrap();
    assert_eq!(fetched.next_action, "none: the deployment is COMPLETED");
    assert!(fetched.ring_progress[0].last_gate.is_some(), "Get shows the current ring's gate");
    let mut fetched = pb::Deployment { next_action: String::new(), ..fetched };
    fetched.ring_progress[0].last_gate = None;
    assert_eq!(fetched, completed);

    let events = events_of(&mut client, &created.id).await;
    let trail: Vec<_> = events.iter().map(|e| (e.kind(), e.from_status(), e.to_status(), e.actor.as_str())).collect();
    use pb::DeploymentEventKind as K;
    use pb::DeploymentStatus as S;
    assert_eq!(
        trail,
        vec![
            (K::Created, S::Unspecified, S::Pending, "alice"),
            (K::StatusChanged, S::Pending, S::AwaitingCab, "system"),
            (K::StatusChanged, S::AwaitingCab, S::Approved, "bob"),
            (K::StatusChanged, S::Approved, S::Deploying, "alice"),
            // The decision first, then the connector taking the work.
            (K::Dispatched, S::Deploying, S::Deploying, "alice"),
            (K::Delivered, S::Deploying, S::Deploying, "alice"),
            (K::OutcomeReported, S::Deploying, S::Deploying, "agent"),
            (K::OutcomeReported, S::Deploying, S::Deploying, "agent"),
            (K::StatusChanged, S::Deploying, S::Completed, "alice"),
        ]
    );
    assert_eq!(events[0].correlation_id, "corr-life");
    assert_eq!(events[2].reason, "CAB-42");
    assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert!(events[3].correlation_id != "corr-life" && !events[3].correlation_id.is_empty(), "generated per call");
    server.stop().await;
}

async fn create_is_idempotent_on_request_id(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let first = create(&mut client, "same-id", "vlc", 10).await;
    let retry = create(&mut client, "same-id", "vlc", 10).await;
    assert_eq!(retry, first, "a retry returns the first result");

    let changed = pb::CreateDeploymentRequest { version: "2.0.0".into(), ..create_request("same-id", "vlc", 10) };
    let reuse = client.create_deployment(changed).await;
    let status = assert_code(reuse, Code::AlreadyExists);
    assert!(status.message().contains(&first.id), "{}", status.message());

    // Concurrent retries of one new request create exactly one deployment.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let mut client = server.deployments();
            tokio::spawn(async move { client.create_deployment(create_request("racing-id", "7zip", 5)).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(response) => {
                ids.insert(response.into_inner().deployment.unwrap().id);
            }
            // A racer that lost the insert on another connection may be told to retry.
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{}", status.message()),
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let all = client.list_deployments(pb::ListDeploymentsRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.deployments.len(), 2);
    server.stop().await;
}

async fn pagination_walks_every_page_newest_first(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let mut created = Vec::new();
    for i in 0..23 {
        let app = if i % 2 == 0 { "even" } else { "odd" };
        created.push(create(&mut client, &format!("page-{i}"), app, if i % 3 == 0 { 80 } else { 20 }).await.id);
    }

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_deployments(pb::ListDeploymentsRequest {
                page_size: 10,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.deployments.len() <= 10);
        seen.extend(page.deployments.into_iter().map(|d| d.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    created.reverse();
    assert_eq!(seen, created, "every deployment once, newest first");

    // Filters combine with pagination; a token is bound to its filters.
    let odd = client
        .list_deployments(pb::ListDeploymentsRequest { page_size: 5, app_name: "odd".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(odd.deployments.len(), 5);
    assert!(odd.deployments.iter().all(|d| d.app_name == "odd"));
    let rest = client
        .list_deployments(pb::ListDeploymentsRequest {
            page_size: 500,
            app_name: "odd".into(),
            page_token: odd.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.deployments.len(), 6);
    assert!(rest.next_page_token.is_empty());
    let wrong_filter = client
        .list_deployments(pb::ListDeploymentsRequest {
            app_name: "even".into(),
            page_token: odd.next_page_token,
            ..Default::default()
        })
        .await;
    assert_code(wrong_filter, Code::InvalidArgument);

    let awaiting = client
        .list_deployments(pb::ListDeploymentsRequest {
            status: pb::DeploymentStatus::AwaitingCab.into(),
            ring: pb::Ring::Lab.into(),
            connector_type: pb::ConnectorType::Intune.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(awaiting.deployments.len(), 8, "i % 3 == 0 for i in 0..23");
    let none = client
        .list_deployments(pb::ListDeploymentsRequest {
            connector_type: pb::ConnectorType::Jamf.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.deployments.is_empty() && none.next_page_token.is_empty());
    server.stop().await;
}

async fn concurrent_mutations_with_one_etag_have_one_winner(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let deployment = started(&mut client, "etag-race").await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let mut client = server.deployments();
            let request = pb::ReportRingOutcomeRequest {
                deployment_id: deployment.id.clone(),
                ring: pb::Ring::Lab.into(),
                success_count: 10 + i,
                failure_count: 0,
                etag: deployment.etag.clone(),
                ..Default::default()
            };
            tokio::spawn(async move { client.report_ring_outcome(request).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => winners += 1,
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{}", status.message()),
        }
    }
    assert_eq!(winners, 1);
    let events = events_of(&mut client, &deployment.id).await;
    assert_eq!(events.iter().filter(|e| e.kind() == pb::DeploymentEventKind::OutcomeReported).count(), 1);
    server.stop().await;
}

async fn concurrent_mutations_without_etag_all_apply(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let deployment = started(&mut client, "no-etag-race").await;
    // Twelve reporters send different cumulative totals at once, without etag.
    // Each is checked against what is stored when it commits, so a lower
    // total never overwrites a higher one: the highest always lands last.
    let tasks: Vec<_> = (1..=12)
        .map(|i| {
            let mut client = server.deployments();
            let request = pb::ReportRingOutcomeRequest {
                deployment_id: deployment.id.clone(),
                ring: pb::Ring::Lab.into(),
                success_count: i * 10,
                failure_count: 0,
                ..Default::default()
            };
            tokio::spawn(async move { client.report_ring_outcome(request).await })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{}", status.message()),
        }
    }
    let final_state =
        client.get_deployment(pb::GetDeploymentRequest { deployment_id: deployment.id.clone() }).await.unwrap();
    assert_eq!(final_state.into_inner().deployment.unwrap().ring_progress[0].success_count, 120);
    let events = events_of(&mut client, &deployment.id).await;
    let reported: Vec<_> = events.iter().filter(|e| e.kind() == pb::DeploymentEventKind::OutcomeReported).collect();
    assert_eq!(reported.len(), accepted, "one event per accepted report");
    server.stop().await;
}

async fn next_event(stream: &mut tonic::Streaming<pb::WatchDeploymentsResponse>) -> Payload {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event within 10 s")
        .expect("stream open")
        .expect("no error")
        .payload
        .expect("payload")
}

async fn a_watch_resumes_from_a_sequence_and_list_events_pages_the_log(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let first = create(&mut client, "resume-1", "zoom", 10).await;
    let second = create(&mut client, "resume-2", "teams", 10).await;

    // The whole log, in sequence order, across pages; and the part after a sequence.
    let all = list_all_events(&mut client, 0).await;
    assert_eq!(all.len(), 4, "two events per create: {all:?}");
    assert!(all.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let after_first = list_all_events(&mut client, all[1].sequence).await;
    assert_eq!(after_first, all[2..].to_vec());
    let bad = pb::ListEventsRequest { after_sequence: -1, ..Default::default() };
    assert_code(client.list_events(bad).await, Code::InvalidArgument);

    // A watcher that saw the first two events reconnects: it gets the rest
    // from the store, then what happens next, each exactly once, in order.
    let resume = pb::WatchDeploymentsRequest { after_sequence: all[1].sequence, ..Default::default() };
    let mut resumed = client.watch_deployments(resume).await.unwrap().into_inner();
    client
        .start_deployment(pb::StartDeploymentRequest { deployment_id: first.id.clone(), ..Default::default() })
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let Payload::Event(event) = next_event(&mut resumed).await else { panic!("no lag expected") };
        seen.push(event);
    }
    assert_eq!(seen[..2], all[2..], "the stored events it missed");
    assert!(seen.windows(2).all(|w| w[0].sequence < w[1].sequence), "{seen:?}");
    use pb::DeploymentEventKind as K;
    assert_eq!(
        seen[2..].iter().map(|e| (e.deployment_id.as_str(), e.kind())).collect::<Vec<_>>(),
        [(first.id.as_str(), K::StatusChanged), (first.id.as_str(), K::Dispatched)]
    );
    // Resuming one deployment's stream replays only its events.
    let one = pb::WatchDeploymentsRequest { deployment_id: second.id.clone(), after_sequence: 1 };
    let mut only_second = client.watch_deployments(one).await.unwrap().into_inner();
    for expected in [K::Created, K::StatusChanged] {
        let Payload::Event(event) = next_event(&mut only_second).await else { panic!("no lag expected") };
        assert_eq!((event.deployment_id.as_str(), event.kind()), (second.id.as_str(), expected));
    }
    server.stop().await;
}

async fn watch_streams_every_later_event_in_order(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let before = create(&mut client, "watch-before", "zoom", 10).await;

    let mut everything = client.watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap().into_inner();
    let mut only_before = client
        .watch_deployments(pb::WatchDeploymentsRequest { deployment_id: before.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let _idle = client.watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap().into_inner();

    let after = create(&mut client, "watch-after", "teams", 10).await;
    client
        .start_deployment(pb::StartDeploymentRequest { deployment_id: before.id.clone(), ..Default::default() })
        .await
        .unwrap();

    let mut sequences = Vec::new();
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let Payload::Event(event) = next_event(&mut everything).await else { panic!("no lag expected") };
        sequences.push(event.sequence);
        kinds.push((event.deployment_id.clone(), event.kind()));
    }
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    use pb::DeploymentEventKind as K;
    assert_eq!(
        kinds,
        vec![
            (after.id.clone(), K::Created),
            (after.id.clone(), K::StatusChanged),
            (before.id.clone(), K::StatusChanged),
            (before.id.clone(), K::Dispatched),
        ]
    );
    for expected in [K::StatusChanged, K::Dispatched] {
        let Payload::Event(event) = next_event(&mut only_before).await else { panic!("no lag expected") };
        assert_eq!((event.deployment_id.as_str(), event.kind()), (before.id.as_str(), expected));
    }

    let unknown = client
        .watch_deployments(pb::WatchDeploymentsRequest {
            deployment_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await;
    assert_code(unknown, Code::NotFound);
    server.stop().await;
}

async fn bad_input_gets_the_right_code(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();

    let mut cases: Vec<(&str, pb::CreateDeploymentRequest, &str)> = Vec::new();
    let base = create_request("bad", "app", 10);
    cases.push(("empty app", pb::CreateDeploymentRequest { app_name: String::new(), ..base.clone() }, "app_name"));
    cases.push((
        "oversized app",
        pb::CreateDeploymentRequest { app_name: "a".repeat(201), ..base.clone() },
        "app_name",
    ));
    cases.push(("blank version", pb::CreateDeploymentRequest { version: "   ".into(), ..base.clone() }, "version"));
    let with_evidence = |e: pb::EvidencePack| pb::CreateDeploymentRequest { evidence: Some(e), ..base.clone() };
    let good = common::evidence(false);
    cases.push((
        "short hash",
        with_evidence(pb::EvidencePack { artifact_sha256: "abc".into(), ..good.clone() }),
        "evidence.artifact_sha256",
    ));
    cases.push((
        "negative count",
        with_evidence(pb::EvidencePack {
            vulnerabilities: Some(pb::VulnerabilityCounts { high: -2, ..Default::default() }),
            ..good.clone()
        }),
        "evidence.vulnerabilities.high",
    ));
    cases.push((
        "bad tag",
        with_evidence(pb::EvidencePack { compliance_tags: vec!["SOX!".into()], ..good.clone() }),
        "evidence.compliance_tags[0]",
    ));
    cases.push((
        "too many tags",
        with_evidence(pb::EvidencePack { compliance_tags: vec!["iso".into(); 21], ..good.clone() }),
        "evidence.compliance_tags",
    ));
    cases.push(("no connector", pb::CreateDeploymentRequest { connector_type: 0, ..base.clone() }, "connector_type"));
    cases.push((
        "unknown connector",
        pb::CreateDeploymentRequest { connector_type: 42, ..base.clone() },
        "connector_type",
    ));
    cases.push(("unknown ring", pb::CreateDeploymentRequest { target_ring: 9, ..base.clone() }, "target_ring"));
    cases.push((
        "bad evidence",
        pb::CreateDeploymentRequest { evidence_pack_id: "x".into(), ..base.clone() },
        "evidence_pack_id",
    ));
    cases.push((
        "no request id",
        pb::CreateDeploymentRequest { request_id: String::new(), ..base.clone() },
        "request_id",
    ));
    cases.push((
        "long request id",
        pb::CreateDeploymentRequest { request_id: "r".repeat(129), ..base.clone() },
        "request_id",
    ));
    for (name, request, field) in cases {
        let status = assert_code(client.create_deployment(request).await, Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = details.bad_request().map(|b| b.field_violations.clone()).unwrap_or_default();
        assert!(violations.iter().any(|v| v.field == field), "{name}: {violations:?}");
    }

    let unknown = uuid::Uuid::new_v4().to_string();
    assert_code(
        client.get_deployment(pb::GetDeploymentRequest { deployment_id: unknown.clone() }).await,
        Code::NotFound,
    );
    assert_code(
        client.get_deployment(pb::GetDeploymentRequest { deployment_id: "not-a-uuid".into() }).await,
        Code::InvalidArgument,
    );
    assert_code(
        client.get_deployment(pb::GetDeploymentRequest { deployment_id: String::new() }).await,
        Code::InvalidArgument,
    );
    assert_code(
        client
            .start_deployment(pb::StartDeploymentRequest { deployment_id: unknown.clone(), ..Default::default() })
            .await,
        Code::NotFound,
    );
    assert_code(
        client
            .list_deployment_events(pb::ListDeploymentEventsRequest {
                deployment_id: unknown.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
    );
    for token in ["garbage!", "djEuMTAuYWJj", "🙂"] {
        let listed = client
            .list_deployments(pb::ListDeploymentsRequest { page_token: token.into(), ..Default::default() })
            .await;
        assert_code(listed, Code::InvalidArgument);
    }
    assert_code(
        client.list_deployments(pb::ListDeploymentsRequest { page_size: -5, ..Default::default() }).await,
        Code::InvalidArgument,
    );
    assert_code(
        client.list_deployments(pb::ListDeploymentsRequest { status: 77, ..Default::default() }).await,
        Code::InvalidArgument,
    );

    let deployment = started(&mut client, "bad-mutations").await;
    let id = deployment.id.clone();
    let bad_reports = [
        pb::ReportRingOutcomeRequest { deployment_id: id.clone(), ring: 0, success_count: 1, ..Default::default() },
        pb::ReportRingOutcomeRequest {
            deployment_id: id.clone(),
            ring: pb::Ring::Lab.into(),
            success_count: -1,
            ..Default::default()
        },
        pb::ReportRingOutcomeRequest {
            deployment_id: id.clone(),
            ring: pb::Ring::Lab.into(),
            etag: "v?".into(),
            ..Default::default()
        },
    ];
    for request in bad_reports {
        assert_code(client.report_ring_outcome(request).await, Code::InvalidArgument);
    }
    assert_code(
        client
            .report_ring_outcome(pb::ReportRingOutcomeRequest {
                deployment_id: id.clone(),
                ring: pb::Ring::Pilot.into(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        client.fail_deployment(pb::FailDeploymentRequest { deployment_id: id.clone(), ..Default::default() }).await,
        Code::InvalidArgument,
    );
    assert_code(
        server
            .deployments_as(APPROVER)
            .approve_deployment(pb::ApproveDeploymentRequest { deployment_id: id.clone(), ..Default::default() })
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        client
            .fail_deployment(pb::FailDeploymentRequest {
                deployment_id: id,
                reason: "x".repeat(2001),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    server.stop().await;
}

async fn shutdown_ends_watch_streams_cleanly(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let mut stream = client.watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap().into_inner();
    create(&mut client, "before-stop", "slack", 10).await;
    assert!(matches!(next_event(&mut stream).await, Payload::Event(_)));
    let stopping = tokio::spawn(server.stop());
    // Drain what was already sent, then the stream ends without an error.
    let mut ended = false;
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("stream ends in time") {
            None => {
                ended = true;
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(status)) => panic!("stream ended with {status:?}"),
        }
    }
    assert!(ended);
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_told_it_fell_behind_and_does_not_block_others() {
    let server =
        start_server_with(Backend::Sqlite, common::Options { event_feed_capacity: 8, ..Default::default() }).await;
    let mut client = server.deployments();
    // The slow watcher has its own connection with a small HTTP/2 window, so
    // that transport buffers fill quickly and the server-side feed overflows.
    let slow_channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .initial_stream_window_size(Some(8 * 1024))
        .initial_connection_window_size(Some(8 * 1024))
        .connect()
        .await
        .unwrap();
    let mut slow = DeploymentServiceClient::new(common::authenticated(&slow_channel, common::VIEWER))
        .watch_deployments(pb::WatchDeploymentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut fast = client.watch_deployments(pb::WatchDeploymentsRequest::default()).await.unwrap().into_inner();

    // The fast watcher keeps up while the slow one reads nothing at all.
    let creates = 400;
    let reader = tokio::spawn(async move {
        let mut received = 0;
        while received < creates * 2 {
            match next_event(&mut fast).await {
                Payload::Event(_) => received += 1,
                Payload::MissedEventCount(n) => panic!("fast watcher missed {n}"),
            }
        }
        received
    });
    for i in 0..creates {
        create(&mut client, &format!("flood-{i}"), "flood", 10).await;
    }
    assert_eq!(reader.await.unwrap(), creates * 2);

    let mut missed = 0;
    let mut events = 0;
    while events + missed < creates * 2 {
        match next_event(&mut slow).await {
            Payload::Event(_) => events += 1,
            Payload::MissedEventCount(n) => missed += n,
        }
    }
    assert!(missed > 0, "the slow watcher was told it fell behind");
    assert_eq!(events + missed, creates * 2, "every event is either delivered or counted as missed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_not_serving_while_postgres_is_unreachable() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let server = start_server(Backend::Postgres).await;
    let mut health = HealthClient::new(server.channel.clone());
    let service = "eucora.v1.DeploymentService".to_owned();
    let mut watch = health.watch(HealthCheckRequest { service: service.clone() }).await.unwrap().into_inner();
    let mut wait_for = async |wanted: ServingStatus| loop {
        let status =
            tokio::time::timeout(Duration::from_secs(15), watch.next()).await.expect("status change").unwrap().unwrap();
        if status.status() == wanted {
            return;
        }
    };
    wait_for(ServingStatus::Serving).await;

    server.database.take_offline().await;
    wait_for(ServingStatus::NotServing).await;
    let overall = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(overall.status(), ServingStatus::NotServing);
    let unavailable = server.deployments().list_deployments(pb::ListDeploymentsRequest::default()).await;
    assert_code(unavailable, Code::Unavailable);

    server.database.bring_online().await;
    wait_for(ServingStatus::Serving).await;
    server.deployments().list_deployments(pb::ListDeploymentsRequest::default()).await.expect("works again");
    drop(watch);
    server.stop().await;
}

#[tokio::test]
async fn migrations_run_twice_are_harmless() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let server = start_server(backend).await;
        server.store.migrate().await.expect("second run");
        create(&mut server.deployments(), "after-remigrate", "git", 10).await;
        server.stop().await;
    }
}
