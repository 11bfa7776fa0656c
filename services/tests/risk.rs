//! Risk scoring end to end: the server computes every score from the evidence
//! pack with the active model and explains it; models are versioned, validated
//! and activated; history counts come from the database.

mod common;

use common::{
    Backend, TestDatabase, assert_code, create_request, evidence, new_create, new_deployment, scrape, start_server,
};
use eucora::v1 as pb;
use eucora::v1::risk_model_service_client::RiskModelServiceClient;
use eucora_services::domain::DeploymentStatus;
use tonic::Code;
use tonic_types::StatusExt;

on_every_backend!(
    scores_are_computed_explained_and_follow_the_active_model,
    history_counts_what_falls_in_its_window_whatever_order_it_was_stored_in
);

fn global(request_id: &str, app: &str, evidence: pb::EvidencePack) -> pb::CreateDeploymentRequest {
    pb::CreateDeploymentRequest {
        target_ring: pb::Ring::Global.into(),
        evidence: Some(evidence),
        ..create_request(request_id, app, 10)
    }
}

async fn scores_are_computed_explained_and_follow_the_active_model(backend: Backend) {
    let server = start_server(backend).await;
    let mut deployments = server.deployments();
    let mut models = RiskModelServiceClient::new(server.channel.clone());

    // The same evidence gives the same score.
    let a = deployments
        .create_deployment(global("same-a", "app-a", evidence(false)))
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    let b = deployments
        .create_deployment(global("same-b", "app-b", evidence(false)))
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(a.risk_score, b.risk_score);
    // 0.20 × 1 (GLOBAL) + 0.05 × 1 (first deployment) + 0.05 × 0.5 (no history) = 0.275
    assert_eq!(a.risk_score, 27);
    let assessment = a.risk_assessment.clone().unwrap();
    assert_eq!((assessment.model_version, assessment.threshold, assessment.score), (1, 50, 27));
    assert_eq!(assessment.factors.len(), 8);

    // A critical finding on a GLOBAL target, rollback planned but untested, needs CAB.
    let critical = pb::EvidencePack {
        vulnerabilities: Some(pb::VulnerabilityCounts { critical: 2, high: 3, ..Default::default() }),
        rollback_tested: false,
        ..evidence(false)
    };
    let risky = deployments
        .create_deployment(global("critical", "kernel", critical))
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(risky.risk_score, 55);
    assert!(risky.requires_cab_approval);
    assert_eq!(risky.status(), pb::DeploymentStatus::AwaitingCab);
    let fetched =
        deployments.get_deployment(pb::GetDeploymentRequest { deployment_id: risky.id.clone() }).await.unwrap();
    let explained: Vec<_> = fetched
        .into_inner()
        .deployment
        .unwrap()
        .risk_assessment
        .unwrap()
        .factors
        .into_iter()
        .map(|f| f.explanation)
        .collect();
    assert!(explained.contains(&"Vulnerability Severity 1 × 0.20: 2 critical findings".to_owned()), "{explained:#?}");
    assert!(explained.contains(&"Blast Radius 1 × 0.20: targets GLOBAL".to_owned()));

    // History: a second deployment of the same app within 30 days scores its frequency lower.
    let again = deployments
        .create_deployment(global("same-a-2", "app-a", evidence(false)))
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    let frequency = again
        .risk_assessment
        .unwrap()
        .factors
        .into_iter()
        .find(|f| f.kind() == pb::RiskFactorKind::DeploymentFrequency)
        .unwrap();
    assert_eq!(frequency.value, 0.7);
    assert_eq!(again.risk_score, 26, "0.20 + 0.05 × 0.7 + 0.05 × 0.5");

    // A new model (threshold 20) changes later scores' verdicts, not earlier deployments'.
    let listed = models.list_risk_models(pb::ListRiskModelsRequest {}).await.unwrap().into_inner().models;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].active);
    let strict = pb::RiskModel { name: "strict".into(), threshold: 20, ..listed[0].clone() };
    let create = pb::CreateRiskModelRequest {
        model: Some(strict.clone()),
        reason: "tighter".into(),
        request_id: "risk-strict-1".into(),
    };
    let created = models.create_risk_model(create.clone()).await.unwrap().into_inner().model.unwrap();
    assert_eq!((created.version, created.active), (2, false));
    // A retry returns the version it created; the same request id for another model is refused.
    let retried = models.create_risk_model(create.clone()).await.unwrap().into_inner().model.unwrap();
    assert_eq!(retried.version, 2, "a retry creates nothing new");
    let other = pb::CreateRiskModelRequest { model: Some(pb::RiskModel { threshold: 30, ..strict }), ..create };
    assert_code(models.create_risk_model(other).await, Code::AlreadyExists);
    // Activation is conditional on the etag of the version read.
    let stale = pb::ActivateRiskModelRequest { version: 2, etag: listed[0].etag.clone(), ..Default::default() };
    assert_code(models.activate_risk_model(stale).await, Code::Aborted);
    let activated = models
        .activate_risk_model(pb::ActivateRiskModelRequest {
            version: 2,
            etag: created.etag.clone(),
            reason: "Q4".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert!(activated.active);
    let later = deployments
        .create_deployment(global("later", "app-c", evidence(false)))
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(later.risk_assessment.unwrap().model_version, 2);
    assert_eq!(later.risk_score, 27);
    assert!(later.requires_cab_approval, "27 > the new threshold of 20");
    let earlier = deployments
        .get_deployment(pb::GetDeploymentRequest { deployment_id: a.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(earlier.risk_assessment.unwrap().model_version, 1);
    assert!(!earlier.requires_cab_approval);
    let listed = models.list_risk_models(pb::ListRiskModelsRequest {}).await.unwrap().into_inner().models;
    assert_eq!(
        listed.iter().filter(|m| m.active).map(|m| m.version).collect::<Vec<_>>(),
        vec![2],
        "exactly one active"
    );

    // Invalid models are INVALID_ARGUMENT with field violations.
    let mut lopsided = listed[0].clone();
    lopsided.factors[0].weight = 0.9;
    lopsided.factors[1].rubric.insert("moon".into(), 0.5);
    let status = assert_code(
        models.create_risk_model(pb::CreateRiskModelRequest { model: Some(lopsided), ..Default::default() }).await,
        Code::InvalidArgument,
    );
    let fields: Vec<_> =
        status.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert!(
        fields.contains(&"model.factors".to_owned()) && fields.contains(&"model.factors[1].rubric".to_owned()),
        "{fields:?}"
    );
    let unknown_kind = pb::RiskModel {
        factors: vec![pb::RiskFactor { kind: 99, weight: 1.0, ..Default::default() }],
        ..listed[0].clone()
    };
    assert_code(
        models.create_risk_model(pb::CreateRiskModelRequest { model: Some(unknown_kind), ..Default::default() }).await,
        Code::InvalidArgument,
    );
    assert_code(models.get_risk_model(pb::GetRiskModelRequest { version: 42 }).await, Code::NotFound);
    assert_code(
        models.activate_risk_model(pb::ActivateRiskModelRequest { version: 42, ..Default::default() }).await,
        Code::NotFound,
    );

    let m = scrape(&server).await;
    assert_eq!(m.value("risk_score_distribution_count", &[("requires_cab", "true")]), 2.0);
    server.stop().await;
}

/// The history factors' counts at the edges of their windows (30 days for
/// creations, 90 for ends). The recent count reads from the first
/// deployment created in the window on, in stored order, so it must skip an
/// older one stored after that.
async fn history_counts_what_falls_in_its_window_whatever_order_it_was_stored_in(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.migrated_store().await;
    let now = eucora_services::clock::Clock::system().now();
    let days = chrono::Duration::days;
    let made: Vec<_> = [("h", 10), ("h", 40), ("other", 1), ("h", 0)]
        .into_iter()
        .map(|(app, age)| {
            let mut made = new_deployment(app);
            made.0.created_at = now - days(age);
            made
        })
        .collect();
    let request_ids: Vec<String> = (0..made.len()).map(|n| format!("history-{n}")).collect();
    let batch: Vec<_> = made.iter().zip(&request_ids).map(|(made, id)| new_create(id, made)).collect();
    assert!(store.create_deployments(&batch).await.iter().all(Result::is_ok));

    let recent = |histories: &std::collections::HashMap<String, eucora_services::domain::risk::History>, app: &str| {
        histories.get(app).map_or(0, |history| history.deployments_last_30_days)
    };
    let today = store.app_histories(&["h", "other", "none"], now).await.unwrap();
    assert_eq!((recent(&today, "h"), recent(&today, "other"), recent(&today, "none")), (2, 1, 0));
    let later = store.app_histories(&["h", "other"], now + days(25)).await.unwrap();
    assert_eq!((recent(&later, "h"), recent(&later, "other")), (1, 1), "10 and 40 days old then: out");
    let past = store.app_histories(&["h", "other"], now + days(31)).await.unwrap();
    assert_eq!((recent(&past, "h"), recent(&past, "other")), (0, 0));

    // Ends: one completed 5 days ago, one failed 100 days ago (outside 90 days).
    for ((deployment, _), (status, age)) in
        made.iter().zip([(DeploymentStatus::Completed, 5), (DeploymentStatus::Failed, 100)])
    {
        let ended =
            eucora_services::domain::Deployment { status, ended_at: Some(now - days(age)), ..deployment.clone() };
        store.save_deployment(&ended, &[]).await.unwrap();
    }
    let h = store.app_histories(&["h"], now).await.unwrap()["h"];
    assert_eq!((h.completed_last_90_days, h.failed_last_90_days), (1, 0));
    let h = store.app_histories(&["h"], now - days(20)).await.unwrap()["h"];
    assert_eq!(
        (h.completed_last_90_days, h.failed_last_90_days),
        (1, 1),
        "with the window reaching 110 days back, both in"
    );
}
