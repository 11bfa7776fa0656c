//! The change calendar end to end, with the clock the test moves and the
//! simulator connector: a rollout waits for its allow window and then
//! proceeds by itself; a freeze holds automatic, manual and CAB-approved
//! work but lets a rollback through, and lifts itself at its expiry; a deny
//! window refuses a manual promotion naming itself and its end, and holds a
//! rollback only when it says so. Windows and the freeze are validated,
//! admin-only and audited.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::rollout::{controlled_server, get, simulator, started, wait_for};
use common::{ADMIN, Backend, OPERATOR, TestServer, assert_code, create_request, scrape, start_server};
use eucora::auth::Authenticated;
use eucora::v1 as pb;
use eucora::v1::change_calendar_service_client::ChangeCalendarServiceClient;
use tonic::Code;
use tonic_types::StatusExt;

const HOUR: u64 = 3600;

/// A change to a valid window that makes it invalid.
type Edit = fn(&mut pb::ChangeWindow);

on_every_backend!(windows_are_validated_versioned_and_audited, the_freeze_is_set_read_lifted_and_audited);

fn calendar(server: &TestServer) -> ChangeCalendarServiceClient<Authenticated> {
    ChangeCalendarServiceClient::new(server.channel_as(ADMIN))
}

/// A whole minute `from_now` after the server's time, as a window's first start in UTC.
fn minute_after(now: DateTime<Utc>, from_now: Duration) -> DateTime<Utc> {
    let at = now + chrono::Duration::from_std(from_now).unwrap();
    DateTime::from_timestamp(at.timestamp() - at.timestamp() % 60, 0).unwrap()
}

fn window(
    name: &str,
    kind: pb::ChangeWindowKind,
    rule: &str,
    first_start: DateTime<Utc>,
    hours: u64,
) -> pb::ChangeWindow {
    pb::ChangeWindow {
        name: name.into(),
        kind: kind.into(),
        recurrence_rule: rule.into(),
        first_start: first_start.format("%Y-%m-%dT%H:%M:%S").to_string(),
        time_zone: "UTC".into(),
        duration: Some(prost_types::Duration { seconds: i64::try_from(hours * HOUR).unwrap(), nanos: 0 }),
        ..Default::default()
    }
}

async fn create_window(server: &TestServer, window: pb::ChangeWindow) -> pb::ChangeWindow {
    let request = pb::CreateChangeWindowRequest { window: Some(window), reason: "CHG-1".into() };
    calendar(server).create_change_window(request).await.unwrap().into_inner().window.unwrap()
}

fn seconds(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 }
}

/// Waits until the scrape shows `hold` holding `count` deployments.
async fn waiting_for(server: &TestServer, hold: &str, count: f64) {
    common::eventually(&format!("{count} deployments held by {hold}"), Duration::from_secs(10), || async {
        let m = scrape(server).await;
        (m.find("deployments_waiting_for_window", &[("hold", hold)]).first().map(|s| s.value) == Some(count))
            .then_some(())
    })
    .await;
}

async fn freeze_gauge(server: &TestServer, active: f64) {
    common::eventually(&format!("change_freeze_active {active}"), Duration::from_secs(10), || async {
        let m = scrape(server).await;
        // Absent until the first read of the calendar after start.
        (m.find("change_freeze_active", &[]).first().map(|s| s.value) == Some(active)).then_some(())
    })
    .await;
}

fn promote(deployment: &pb::Deployment) -> pb::PromoteDeploymentRequest {
    pb::PromoteDeploymentRequest { deployment_id: deployment.id.clone(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_waits_for_its_window_and_then_proceeds() {
    let (server, time) = controlled_server(Backend::Sqlite).await;
    simulator(&server, "sim", 200, 0.0).await;
    // CANARY receives work only from 30 h from now, for 2 h a day.
    let opens = minute_after(time.clock().now(), Duration::from_secs(30 * HOUR));
    let mut nights = window("canary-nights", pb::ChangeWindowKind::Allow, "FREQ=DAILY", opens, 2);
    nights.rings = vec![pb::Ring::Canary.into()];
    let created = create_window(&server, nights).await;
    assert!(!created.open);
    assert_eq!(created.next_change_time, Some(seconds(opens)));

    let (deployment, mut watch) = started(&server, "sim", "windowed").await;
    wait_for(&mut watch, pb::DeploymentEventKind::OutcomeReported, Some(pb::Ring::Lab)).await;
    time.advance(Duration::from_secs(2 * HOUR));
    waiting_for(&server, "outside_allow_window", 1.0).await;
    let held = get(&server, &deployment.id).await;
    assert_eq!(held.current_ring(), pb::Ring::Lab, "baked, but the window is closed");
    assert_eq!(
        held.next_action,
        format!(
            "promotes to CANARY at {} UTC, when window canary-nights opens, if success rate stays >= 0.98",
            opens.format("%Y-%m-%dT%H:%M")
        )
    );
    assert_eq!(held.next_action_time, Some(seconds(opens)));
    let evaluate = pb::EvaluatePromotionGateRequest { deployment_id: held.id.clone() };
    let gate = server.promotions().evaluate_promotion_gate(evaluate).await.unwrap().into_inner().evaluation.unwrap();
    assert!(!gate.passed);
    let check = gate.checks.into_iter().find(|c| c.kind() == pb::GateCheckKind::Window).unwrap();
    assert!(!check.passed);
    assert_eq!(
        check.message,
        format!("outside allow windows until 'canary-nights' opens at {} UTC", opens.format("%Y-%m-%dT%H:%M"))
    );

    let refused = assert_code(server.promotions().promote_deployment(promote(&held)).await, Code::FailedPrecondition);
    assert!(refused.message().contains("outside allow windows until 'canary-nights' opens"), "{}", refused.message());

    time.advance(Duration::from_secs(28 * HOUR + 60));
    let promoted = wait_for(&mut watch, pb::DeploymentEventKind::RingPromoted, Some(pb::Ring::Canary)).await;
    assert_eq!(promoted.actor, "controller");
    waiting_for(&server, "outside_allow_window", 0.0).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_holds_every_promotion_and_start_lets_rollbacks_through_and_expires() {
    let (server, time) = controlled_server(Backend::Sqlite).await;
    simulator(&server, "sim", 200, 0.0).await;
    let (running, mut watch) = started(&server, "sim", "running").await;
    wait_for(&mut watch, pb::DeploymentEventKind::OutcomeReported, Some(pb::Ring::Lab)).await;

    let expires = minute_after(time.clock().now(), Duration::from_secs(3 * HOUR));
    let set = pb::SetChangeFreezeRequest { reason: "quarter-close".into(), expire_time: Some(seconds(expires)) };
    let as_operator =
        ChangeCalendarServiceClient::new(server.channel_as(OPERATOR)).set_change_freeze(set.clone()).await;
    assert_code(as_operator, Code::PermissionDenied);
    let freeze = calendar(&server).set_change_freeze(set).await.unwrap().into_inner().freeze.unwrap();
    assert_eq!(freeze.set_by, "carol");
    freeze_gauge(&server, 1.0).await;
    let held = format!("change freeze 'quarter-close' until {}", expires.format("%Y-%m-%dT%H:%MZ"));

    // Automatic promotion: baked, held.
    time.advance(Duration::from_secs(2 * HOUR));
    waiting_for(&server, "freeze", 1.0).await;
    let waiting = get(&server, &running.id).await;
    assert_eq!(waiting.current_ring(), pb::Ring::Lab);
    assert_eq!(waiting.next_action, format!("waiting: {held}"));
    // Manual promotion.
    let refused =
        assert_code(server.promotions().promote_deployment(promote(&waiting)).await, Code::FailedPrecondition);
    assert!(refused.message().contains(&held), "{}", refused.message());
    // A CAB-approved deployment cannot start.
    let mut operator = server.deployments_as(OPERATOR);
    let risky = pb::CreateDeploymentRequest {
        connector_type: pb::ConnectorType::Landscape.into(),
        connector_name: "sim".into(),
        ..create_request("risky", "kernel", 80)
    };
    let risky = operator.create_deployment(risky).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(risky.status(), pb::DeploymentStatus::AwaitingCab);
    let approve =
        pb::ApproveDeploymentRequest { deployment_id: risky.id.clone(), reason: "CAB-7".into(), ..Default::default() };
    server.deployments_as(common::APPROVER).approve_deployment(approve).await.unwrap();
    let start = pb::StartDeploymentRequest { deployment_id: risky.id.clone(), ..Default::default() };
    let refused = assert_code(operator.start_deployment(start.clone()).await, Code::FailedPrecondition);
    assert_eq!(refused.message(), format!("StartDeployment is held by the change calendar: {held}"));
    assert_eq!(get(&server, &risky.id).await.status(), pb::DeploymentStatus::Approved, "nothing dispatched");
    // A rollback goes through.
    let rollback = pb::RollbackDeploymentRequest {
        deployment_id: running.id.clone(),
        reason: "bad build".into(),
        ..Default::default()
    };
    let rolled_back = server.promotions().rollback_deployment(rollback).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(rolled_back.status(), pb::DeploymentStatus::RolledBack);

    // The expiry lifts it, recorded as the controller's.
    time.advance(Duration::from_secs(HOUR + 60));
    freeze_gauge(&server, 0.0).await;
    let lifted = common::eventually("the expired freeze lifted", Duration::from_secs(10), || async {
        let request = pb::ListCalendarChangesRequest { subject: "freeze".into(), ..Default::default() };
        let changes = calendar(&server).list_calendar_changes(request).await.unwrap().into_inner().changes;
        (changes.len() == 2).then_some(changes)
    })
    .await;
    assert_eq!(lifted[0].kind(), pb::CalendarChangeKind::FreezeSet);
    assert_eq!((lifted[0].actor.as_str(), lifted[0].reason.as_str()), ("carol", "quarter-close"));
    assert_eq!(lifted[1].kind(), pb::CalendarChangeKind::FreezeExpired);
    assert_eq!(lifted[1].actor, "controller");
    assert_eq!(lifted[1].freeze_before.as_ref().unwrap().reason, "quarter-close");
    let none = calendar(&server).get_change_freeze(pb::GetChangeFreezeRequest {}).await.unwrap().into_inner();
    assert_eq!(none.freeze, None);
    let started = operator.start_deployment(start).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(started.status(), pb::DeploymentStatus::Deploying);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_window_refuses_promotion_naming_its_end_and_holds_rollbacks_only_when_it_says_so() {
    let (server, time) = controlled_server(Backend::Sqlite).await;
    simulator(&server, "sim", 200, 0.0).await;
    let (deployment, mut watch) = started(&server, "sim", "denied").await;
    wait_for(&mut watch, pb::DeploymentEventKind::OutcomeReported, Some(pb::Ring::Lab)).await;
    // Once, from a minute ago for 6 hours, for Landscape deployments only.
    let start = minute_after(time.clock().now(), Duration::ZERO) - chrono::Duration::minutes(1);
    let ends = start + chrono::Duration::hours(6);
    let mut month_end = window("month-end", pb::ChangeWindowKind::Deny, "FREQ=DAILY;COUNT=1", start, 6);
    month_end.connector_types = vec![pb::ConnectorType::Landscape.into()];
    let created = create_window(&server, month_end).await;
    assert!(created.open);
    assert_eq!(created.next_change_time, Some(seconds(ends)));

    time.advance(Duration::from_secs(2 * HOUR));
    waiting_for(&server, "deny_window", 1.0).await;
    let held = get(&server, &deployment.id).await;
    let until = ends.format("%Y-%m-%dT%H:%M");
    assert_eq!(
        held.next_action,
        format!("promotes to CANARY at {until} UTC, when deny window month-end ends, if success rate stays >= 0.98")
    );
    let refused = assert_code(server.promotions().promote_deployment(promote(&held)).await, Code::FailedPrecondition);
    assert!(refused.message().contains(&format!("deny window 'month-end' until {until} UTC")), "{}", refused.message());

    // Forbidding rollbacks holds them too; the update needs the current etag.
    let mut forbidding = created.clone();
    forbidding.forbid_rollback = true;
    forbidding.etag = "7".into();
    let update = |window| pb::UpdateChangeWindowRequest { window: Some(window), reason: "no rollbacks either".into() };
    assert_code(calendar(&server).update_change_window(update(forbidding.clone())).await, Code::Aborted);
    forbidding.etag = created.etag.clone();
    let updated =
        calendar(&server).update_change_window(update(forbidding.clone())).await.unwrap().into_inner().window.unwrap();
    assert_ne!(updated.etag, created.etag);
    let rollback = pb::RollbackDeploymentRequest {
        deployment_id: deployment.id.clone(),
        reason: "bad".into(),
        ..Default::default()
    };
    let refused =
        assert_code(server.promotions().rollback_deployment(rollback.clone()).await, Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        format!("the rollback is held by the change calendar: deny window 'month-end' until {until} UTC")
    );
    forbidding.forbid_rollback = false;
    forbidding.etag = String::new();
    calendar(&server).update_change_window(update(forbidding)).await.unwrap();
    let rolled_back = server.promotions().rollback_deployment(rollback).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(rolled_back.status(), pb::DeploymentStatus::RolledBack);
    server.stop().await;
}

async fn windows_are_validated_versioned_and_audited(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = calendar(&server);
    let start = DateTime::parse_from_rfc3339("2026-12-07T22:00:00Z").unwrap().with_timezone(&Utc);
    let mut nights = window("weekday-nights", pb::ChangeWindowKind::Allow, "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH", start, 6);
    nights.time_zone = "Europe/Berlin".into();
    nights.rings = vec![pb::Ring::Pilot.into(), pb::Ring::Global.into()];
    nights.site_classes = vec![pb::SiteClass::Online.into()];
    let created = create_window(&server, nights.clone()).await;
    assert_eq!(created.etag, "1");
    assert_eq!(
        (created.recurrence_rule.as_str(), created.first_start.as_str()),
        ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH", "2026-12-07T22:00:00")
    );
    assert_eq!(created.rings, nights.rings);
    assert!(created.next_change_time.is_some());
    let again = pb::CreateChangeWindowRequest { window: Some(nights.clone()), ..Default::default() };
    assert_code(client.create_change_window(again).await, Code::AlreadyExists);

    // Each bad field is named.
    let bad = |change: Edit| {
        let mut w = nights.clone();
        w.name = "bad".into();
        change(&mut w);
        pb::CreateChangeWindowRequest { window: Some(w), ..Default::default() }
    };
    let cases: [(Edit, &str); 9] = [
        (|w| w.time_zone = "Mars/Olympus".into(), "window.time_zone"),
        (|w| w.recurrence_rule = "FREQ=SOMETIMES".into(), "window.recurrence_rule"),
        // Not a time in Berlin: the clocks jump from 02:00 to 03:00 that night.
        (|w| w.first_start = "2026-03-29T02:30:00".into(), "window.first_start"),
        (|w| w.first_start = "next monday".into(), "window.first_start"),
        (|w| w.duration = Some(prost_types::Duration::default()), "window.duration"),
        (|w| w.forbid_rollback = true, "window.forbid_rollback"),
        (|w| w.name = "freeze".into(), "window.name"),
        (|w| w.rings = vec![pb::Ring::Pilot.into(), pb::Ring::Pilot.into()], "window.rings[1]"),
        (|w| w.kind = 0, "window.kind"),
    ];
    for (change, field) in cases {
        let status = assert_code(client.create_change_window(bad(change)).await, Code::InvalidArgument);
        let violations = status.get_details_bad_request().expect("BadRequest details").field_violations;
        assert!(violations.iter().any(|v| v.field == field), "{field}: {violations:?}");
    }
    let deny =
        window("quarter-close", pb::ChangeWindowKind::Deny, "FREQ=YEARLY;BYMONTH=3,6,9,12;BYMONTHDAY=-1", start, 24);
    create_window(&server, deny).await;
    let names: Vec<_> = client.list_change_windows(pb::ListChangeWindowsRequest {}).await.unwrap().into_inner().windows;
    assert_eq!(names.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["quarter-close", "weekday-nights"]);

    let mut longer = created.clone();
    longer.duration = Some(prost_types::Duration { seconds: 8 * 3600, nanos: 0 });
    let update = pb::UpdateChangeWindowRequest { window: Some(longer), reason: "CHG-2".into() };
    let updated = client.update_change_window(update).await.unwrap().into_inner().window.unwrap();
    assert_eq!(updated.etag, "2");
    assert_eq!(updated.create_time, created.create_time);
    let stale =
        pb::DeleteChangeWindowRequest { name: "weekday-nights".into(), etag: "1".into(), reason: String::new() };
    assert_code(client.delete_change_window(stale).await, Code::Aborted);
    let delete =
        pb::DeleteChangeWindowRequest { name: "weekday-nights".into(), etag: "2".into(), reason: "CHG-3".into() };
    client.delete_change_window(delete.clone()).await.unwrap();
    assert_code(client.delete_change_window(delete).await, Code::NotFound);
    let get = pb::GetChangeWindowRequest { name: "weekday-nights".into() };
    assert_code(client.get_change_window(get).await, Code::NotFound);

    let request = pb::ListCalendarChangesRequest { subject: "weekday-nights".into(), ..Default::default() };
    let log = client.list_calendar_changes(request).await.unwrap().into_inner().changes;
    let kinds: Vec<_> = log.iter().map(|c| c.kind()).collect();
    use pb::CalendarChangeKind::{WindowCreated, WindowDeleted, WindowUpdated};
    assert_eq!(kinds, [WindowCreated, WindowUpdated, WindowDeleted]);
    assert!(log.iter().all(|c| c.actor == "carol"));
    assert_eq!(log.iter().map(|c| c.reason.as_str()).collect::<Vec<_>>(), ["CHG-1", "CHG-2", "CHG-3"]);
    assert_eq!(log[1].window_before.as_ref().unwrap().duration.unwrap().seconds, 6 * 3600);
    assert_eq!(log[1].window_after.as_ref().unwrap().duration.unwrap().seconds, 8 * 3600);
    assert!(log[2].window_after.is_none());
    let all = client
        .list_calendar_changes(pb::ListCalendarChangesRequest { page_size: 2, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.changes.len(), 2);
    assert!(!all.next_page_token.is_empty());
    server.stop().await;
}

async fn the_freeze_is_set_read_lifted_and_audited(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = calendar(&server);
    let now = eucora_services::clock::Clock::system().now();
    let set = |reason: &str, expires: DateTime<Utc>| pb::SetChangeFreezeRequest {
        reason: reason.into(),
        expire_time: Some(seconds(expires)),
    };
    assert_code(
        client.set_change_freeze(set("incident", now - chrono::Duration::hours(1))).await,
        Code::InvalidArgument,
    );
    assert_code(
        client.set_change_freeze(set("incident", now + chrono::Duration::days(91))).await,
        Code::InvalidArgument,
    );
    assert_code(client.set_change_freeze(set("", now + chrono::Duration::hours(1))).await, Code::InvalidArgument);
    let missing = pb::SetChangeFreezeRequest { reason: "incident".into(), expire_time: None };
    assert_code(client.set_change_freeze(missing).await, Code::InvalidArgument);
    assert_code(client.lift_change_freeze(pb::LiftChangeFreezeRequest::default()).await, Code::FailedPrecondition);

    let expires = now + chrono::Duration::hours(4);
    client.set_change_freeze(set("incident INC-12", expires)).await.unwrap();
    let read = client.get_change_freeze(pb::GetChangeFreezeRequest {}).await.unwrap().into_inner().freeze.unwrap();
    assert_eq!((read.reason.as_str(), read.set_by.as_str()), ("incident INC-12", "carol"));
    assert_eq!(read.expire_time.unwrap().seconds, expires.timestamp());
    freeze_gauge(&server, 1.0).await;
    let lift = pb::LiftChangeFreezeRequest { reason: "resolved".into() };
    let lifted = client.lift_change_freeze(lift).await.unwrap().into_inner().freeze.unwrap();
    assert_eq!(lifted.reason, "incident INC-12");
    assert_eq!(client.get_change_freeze(pb::GetChangeFreezeRequest {}).await.unwrap().into_inner().freeze, None);
    freeze_gauge(&server, 0.0).await;

    let request = pb::ListCalendarChangesRequest { subject: "freeze".into(), ..Default::default() };
    let log = client.list_calendar_changes(request).await.unwrap().into_inner().changes;
    let kinds: Vec<_> = log.iter().map(|c| c.kind()).collect();
    assert_eq!(kinds, [pb::CalendarChangeKind::FreezeSet, pb::CalendarChangeKind::FreezeLifted]);
    assert_eq!(log[1].reason, "resolved");
    assert_eq!(log[1].freeze_before.as_ref().unwrap().reason, "incident INC-12");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_needs_two_identities_and_moves_one_step_through_a_freeze() {
    use eucora::v1::control_change_service_client::ControlChangeServiceClient;
    let (server, time) = controlled_server(Backend::Sqlite).await;
    simulator(&server, "sim", 200, 0.0).await;
    let (deployment, mut watch) = started(&server, "sim", "urgent").await;
    let (other, _) = started(&server, "sim", "other").await;
    wait_for(&mut watch, pb::DeploymentEventKind::OutcomeReported, Some(pb::Ring::Lab)).await;
    let expires = minute_after(time.clock().now(), Duration::from_secs(72 * HOUR));
    let set = pb::SetChangeFreezeRequest { reason: "holidays".into(), expire_time: Some(seconds(expires)) };
    calendar(&server).set_change_freeze(set).await.unwrap();
    time.advance(Duration::from_secs(2 * HOUR));
    waiting_for(&server, "freeze", 2.0).await;

    let request =
        |id: &str| pb::RequestBreakGlassRequest { deployment_id: id.to_owned(), reason: "CVE-2026-1234 fix".into() };
    let mut alice = ControlChangeServiceClient::new(server.channel_as(OPERATOR));
    let mut carol = ControlChangeServiceClient::new(server.channel_as(ADMIN));
    let approve = |id: &str| pb::ApproveControlChangeRequest { id: id.to_owned(), reason: "CAB emergency".into() };

    // One identity alone cannot: carol requests, carol may not approve.
    let own = carol.request_break_glass(request(&deployment.id)).await.unwrap().into_inner().change.unwrap();
    let refused = assert_code(carol.approve_control_change(approve(&own.id)).await, Code::PermissionDenied);
    assert!(refused.message().contains("another admin"), "{}", refused.message());
    assert_eq!(get(&server, &deployment.id).await.current_ring(), pb::Ring::Lab);

    // Two can: alice (operator) requests, carol (admin) approves.
    let change = alice.request_break_glass(request(&deployment.id)).await.unwrap().into_inner().change.unwrap();
    assert_eq!(change.kind(), pb::ControlChangeKind::BreakGlass);
    assert_eq!((change.deployment_id.as_str(), change.from_ring()), (deployment.id.as_str(), pb::Ring::Lab));
    let held = format!("change freeze 'holidays' until {}", expires.format("%Y-%m-%dT%H:%MZ"));
    assert_eq!(change.weakenings, std::slice::from_ref(&held));
    let approved = carol.approve_control_change(approve(&change.id)).await.unwrap().into_inner().change.unwrap();
    assert_eq!(approved.state(), pb::ControlChangeState::Approved);
    let glass = wait_for(&mut watch, pb::DeploymentEventKind::BreakGlass, None).await;
    assert_eq!(glass.actor, "carol");
    assert_eq!(
        glass.reason,
        format!("break-glass out of LAB requested by alice (CVE-2026-1234 fix), approved by carol; overrides: {held}")
    );
    let promoted = wait_for(&mut watch, pb::DeploymentEventKind::RingPromoted, Some(pb::Ring::Canary)).await;
    assert_eq!(promoted.actor, "carol");
    // One step only: CANARY's gate and the freeze still hold it.
    time.advance(Duration::from_secs(30 * HOUR));
    waiting_for(&server, "freeze", 2.0).await;
    assert_eq!(get(&server, &deployment.id).await.current_ring(), pb::Ring::Canary);
    assert_code(carol.approve_control_change(approve(&change.id)).await, Code::FailedPrecondition);
    assert_eq!(get(&server, &other.id).await.current_ring(), pb::Ring::Lab, "the other deployment stays frozen");

    // A request whose deployment moved on is superseded, not applied.
    let stale = alice.request_break_glass(request(&other.id)).await.unwrap().into_inner().change.unwrap();
    let rollback =
        pb::RollbackDeploymentRequest { deployment_id: other.id.clone(), reason: "bad".into(), ..Default::default() };
    server.promotions().rollback_deployment(rollback).await.unwrap();
    assert_code(carol.approve_control_change(approve(&stale.id)).await, Code::FailedPrecondition);
    let read = carol.get_control_change(pb::GetControlChangeRequest { id: stale.id.clone() }).await.unwrap();
    assert_eq!(read.into_inner().change.unwrap().state(), pb::ControlChangeState::Superseded);
    assert_code(alice.request_break_glass(request(&other.id)).await, Code::FailedPrecondition);
    server.stop().await;
}
