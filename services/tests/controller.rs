//! The rollout controller end to end, with a clock the test moves and the
//! simulator connector: a rollout from LAB to GLOBAL with no manual call and
//! no promotion before its bake time, automatic rollback (and none below the
//! minimum sample), pause and resume, stall flags, and a manual promotion
//! racing the controller.

mod common;

use std::time::Duration;

use common::rollout::{acted, controlled_server, evaluated, get, simulator, started, wait_for};
use common::{Backend, events_of, scrape};
use eucora::v1 as pb;

const HOUR: u64 = 3600;

/// Bake times of the default policies, LAB to GLOBAL.
const BAKE_HOURS: [u64; 5] = [1, 24, 48, 72, 72];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_runs_from_lab_to_global_on_its_own_after_each_bake_time() {
    let (server, time) = controlled_server(Backend::Sqlite).await;
    simulator(&server, "sim", 200, 0.0).await;
    let (deployment, mut watch) = started(&server, "sim", "auto").await;
    let rings = [pb::Ring::Lab, pb::Ring::Canary, pb::Ring::Pilot, pb::Ring::Department, pb::Ring::Global];
    for (index, ring) in rings.into_iter().enumerate() {
        wait_for(&mut watch, pb::DeploymentEventKind::OutcomeReported, Some(ring)).await;
        let waiting = get(&server, &deployment.id).await;
        assert_eq!(waiting.current_ring(), ring, "nothing moves before the bake time");
        let target =
            rings.get(index + 1).map_or("completion".to_owned(), |next| next.as_str_name()["RING_".len()..].to_owned());
        assert!(waiting.next_action.starts_with(&format!("promotes to {target} at ")), "{}", waiting.next_action);
        assert!(waiting.next_action_time.is_some());
        time.advance(Duration::from_secs(BAKE_HOURS[index] * HOUR));
        let moved = match rings.get(index + 1) {
            Some(next) => wait_for(&mut watch, pb::DeploymentEventKind::RingPromoted, Some(*next)).await,
            None => wait_for(&mut watch, pb::DeploymentEventKind::StatusChanged, None).await,
        };
        assert_eq!(moved.actor, "controller");
    }
    let done = get(&server, &deployment.id).await;
    assert_eq!(done.status(), pb::DeploymentStatus::Completed);
    for (progress, bake) in done.ring_progress.iter().zip(BAKE_HOURS) {
        let stayed = progress.promote_time.unwrap().seconds - progress.start_time.unwrap().seconds;
        assert!(stayed >= (bake * HOUR) as i64, "{:?} left after {stayed} s, bake {bake} h", progress.ring());
    }
    assert_eq!(acted(&server, "promote", 5.0).await, 5.0);
    let m = scrape(&server).await;
    assert_eq!(
        m.value("ring_promotion_total", &[("from_ring", "lab"), ("to_ring", "canary"), ("status", "promoted")]),
        1.0
    );
    assert_eq!(m.value("ring_duration_seconds_count", &[("ring", "pilot")]), 1.0);
    assert!(m.value("ring_duration_seconds_sum", &[("ring", "pilot")]) >= (48 * HOUR) as f64);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_ring_is_rolled_back_but_not_below_the_minimum_sample() {
    let (server, _time) = controlled_server(Backend::Sqlite).await;
    simulator(&server, "failing", 200, 0.1).await;
    simulator(&server, "small", 40, 0.25).await;

    let (small, mut small_watch) = started(&server, "small", "small").await;
    wait_for(&mut small_watch, pb::DeploymentEventKind::OutcomeReported, Some(pb::Ring::Lab)).await;

    let (failing, mut watch) = started(&server, "failing", "failing").await;
    let rolled_back = loop {
        let changed = wait_for(&mut watch, pb::DeploymentEventKind::StatusChanged, None).await;
        if changed.to_status() != pb::DeploymentStatus::Deploying {
            break changed;
        }
    };
    assert_eq!(rolled_back.to_status(), pb::DeploymentStatus::RolledBack);
    assert_eq!(rolled_back.actor, "controller");
    assert_eq!(rolled_back.reason, "failure rate 0.100 > 0.050 on LAB with 200 devices reported");
    assert_eq!(get(&server, &failing.id).await.status(), pb::DeploymentStatus::RolledBack);

    // 10 failures of 40 is 25 %, but 40 devices are below the minimum sample of 50.
    evaluated(&server, "wait", 1.0).await;
    let small = get(&server, &small.id).await;
    assert_eq!(small.status(), pb::DeploymentStatus::Deploying);
    assert!(small.next_action.starts_with("waits for the gate to CANARY"), "{}", small.next_action);
    assert_eq!(acted(&server, "roll_back", 1.0).await, 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_stays_past_its_bake_time_and_moves_after_resume() {
    let (server, time) = controlled_server(Backend::Sqlite).await;
    simulator(&server, "sim", 200, 0.0).await;
    let (deployment, mut watch) = started(&server, "sim", "paused").await;
    let mut client = server.deployments();
    let pause = pb::PauseDeploymentRequest {
        deployment_id: deployment.id.clone(),
        reason: "freeze".into(),
        ..Default::default()
    };
    let paused = client.pause_deployment(pause.clone()).await.unwrap().into_inner().deployment.unwrap();
    assert!(paused.paused);
    common::assert_code(client.pause_deployment(pause).await, tonic::Code::FailedPrecondition);
    wait_for(&mut watch, pb::DeploymentEventKind::OutcomeReported, Some(pb::Ring::Lab)).await;

    time.advance(Duration::from_secs(2 * HOUR));
    evaluated(&server, "skip", 3.0).await;
    let still = get(&server, &deployment.id).await;
    assert_eq!(still.current_ring(), pb::Ring::Lab, "paused: not promoted past its bake time");
    assert!(still.next_action.contains("paused"), "{}", still.next_action);

    let resume = pb::ResumeDeploymentRequest { deployment_id: deployment.id.clone(), ..Default::default() };
    client.resume_deployment(resume).await.unwrap();
    let promoted = wait_for(&mut watch, pb::DeploymentEventKind::RingPromoted, Some(pb::Ring::Canary)).await;
    assert_eq!(promoted.actor, "controller");
    let kinds: Vec<_> = events_of(&mut client, &deployment.id).await.iter().map(|e| e.kind()).collect();
    assert!(kinds.contains(&pb::DeploymentEventKind::Paused) && kinds.contains(&pb::DeploymentEventKind::Resumed));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_ring_is_flagged_stalled_not_moved() {
    let (server, time) = controlled_server(Backend::Sqlite).await;
    simulator(&server, "silent", 0, 0.0).await;
    let (deployment, mut watch) = started(&server, "silent", "stalled").await;
    time.advance(Duration::from_secs(25 * HOUR));
    let stalled = wait_for(&mut watch, pb::DeploymentEventKind::Stalled, None).await;
    assert_eq!(stalled.actor, "controller");
    assert!(stalled.reason.starts_with("no new outcomes on LAB for 1day"), "{}", stalled.reason);
    let now = get(&server, &deployment.id).await;
    assert!(now.stall_time.is_some());
    assert_eq!((now.status(), now.current_ring()), (pb::DeploymentStatus::Deploying, pb::Ring::Lab));
    evaluated(&server, "wait", 2.0).await;
    assert_eq!(scrape(&server).await.value("deployments_stalled", &[]), 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_promotion_racing_the_controller_promotes_once() {
    let (server, time) = controlled_server(Backend::Postgres).await;
    simulator(&server, "sim", 200, 0.0).await;
    let (deployment, mut watch) = started(&server, "sim", "race").await;
    let mut client = server.deployments();
    let pause = pb::PauseDeploymentRequest { deployment_id: deployment.id.clone(), ..Default::default() };
    client.pause_deployment(pause).await.unwrap();
    wait_for(&mut watch, pb::DeploymentEventKind::OutcomeReported, Some(pb::Ring::Lab)).await;
    time.advance(Duration::from_secs(2 * HOUR));

    // Resuming wakes the controller; eight manual promotions of the same step go at once.
    let manual: Vec<_> = (0..8)
        .map(|_| {
            let mut promotions = server.promotions();
            let request = pb::PromoteDeploymentRequest {
                deployment_id: deployment.id.clone(),
                from_ring: pb::Ring::Lab.into(),
                ..Default::default()
            };
            tokio::spawn(async move { promotions.promote_deployment(request).await })
        })
        .collect();
    client
        .resume_deployment(pb::ResumeDeploymentRequest { deployment_id: deployment.id.clone(), ..Default::default() })
        .await
        .unwrap();
    for task in manual {
        let _ = task.await.unwrap();
    }
    wait_for(&mut watch, pb::DeploymentEventKind::RingPromoted, Some(pb::Ring::Canary)).await;
    evaluated(&server, "wait", 1.0).await;
    let recorded = server
        .promotions()
        .list_promotions(pb::ListPromotionsRequest { deployment_id: deployment.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .promotions;
    let from_lab: Vec<_> = recorded
        .iter()
        .filter(|p| p.from_ring() == pb::Ring::Lab && p.result() == pb::PromotionResult::Promoted)
        .collect();
    assert_eq!(from_lab.len(), 1, "{recorded:#?}");
    assert_eq!(get(&server, &deployment.id).await.current_ring(), pb::Ring::Canary);
    server.stop().await;
}
