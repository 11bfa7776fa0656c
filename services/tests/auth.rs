//! Authentication and authorization end to end: every RPC against every
//! role (allowed ones reach their handler, the others are PERMISSION_DENIED
//! naming the role), missing, wrong and malformed credentials
//! UNAUTHENTICATED, separation of duties between identities of an auth file,
//! the file re-read when it changes, and the refusals counted.

mod common;

use std::time::Duration;

use common::{ADMIN, APPROVER, Backend, OPERATOR, Options, REPORTER, VIEWER, assert_code, create_request, scrape};
use eucora::v1 as pb;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use eucora_services::auth::{AuthConfig, Role, tokens};
use http::uri::PathAndQuery;
use tonic::Code;
use tonic::transport::Channel;

/// The role each RPC needs, as the security issue's table says (written out
/// here, not taken from the server's own table).
const NEEDS: &[(&str, &str)] = &[
    ("DeploymentService/CreateDeployment", "operator"),
    ("DeploymentService/GetDeployment", "viewer"),
    ("DeploymentService/ListDeployments", "viewer"),
    ("DeploymentService/ApproveDeployment", "approver"),
    ("DeploymentService/RejectDeployment", "approver"),
    ("DeploymentService/StartDeployment", "operator"),
    ("DeploymentService/ReportRingOutcome", "reporter"),
    ("DeploymentService/CorrectRingOutcome", "operator"),
    ("DeploymentService/CompleteDeployment", "operator"),
    ("DeploymentService/FailDeployment", "operator"),
    ("DeploymentService/PauseDeployment", "operator"),
    ("DeploymentService/ResumeDeployment", "operator"),
    ("DeploymentService/ListDeploymentEvents", "viewer"),
    ("DeploymentService/ListEvents", "viewer"),
    ("DeploymentService/WatchDeployments", "viewer"),
    ("RingPromotionService/GetRingPolicy", "viewer"),
    ("RingPromotionService/ListRingPolicies", "viewer"),
    ("RingPromotionService/UpdateRingPolicy", "admin"),
    ("RingPromotionService/ListRingPolicyChanges", "viewer"),
    ("RingPromotionService/EvaluatePromotionGate", "viewer"),
    ("RingPromotionService/PromoteDeployment", "operator"),
    ("RingPromotionService/RollbackDeployment", "operator"),
    ("RingPromotionService/ListPromotions", "viewer"),
    ("ConnectorService/CreateConnector", "admin"),
    ("ConnectorService/GetConnector", "viewer"),
    ("ConnectorService/ListConnectors", "viewer"),
    ("ConnectorService/UpdateConnector", "admin"),
    ("ConnectorService/DeleteConnector", "admin"),
    ("ConnectorService/CheckConnectorHealth", "viewer"),
    ("ConnectorService/GetCircuitBreaker", "viewer"),
    ("ConnectorService/ResetCircuitBreaker", "admin"),
    ("ConnectorService/ListConnectorChanges", "viewer"),
    ("RiskModelService/ListRiskModels", "viewer"),
    ("RiskModelService/GetRiskModel", "viewer"),
    ("RiskModelService/CreateRiskModel", "admin"),
    ("RiskModelService/ActivateRiskModel", "admin"),
];

/// The development identities and what each may call.
fn may(token: &str, needed: &str) -> bool {
    match token {
        ADMIN => true,
        OPERATOR => matches!(needed, "operator" | "viewer"),
        APPROVER => matches!(needed, "approver" | "viewer"),
        VIEWER => needed == "viewer",
        REPORTER => needed == "reporter",
        _ => false,
    }
}

/// Calls `method` with an empty message and the `authorization` header
/// given, and returns the status code (OK when it answered).
async fn call(channel: &Channel, method: &str, authorization: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(());
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value.parse().unwrap());
    }
    let path = PathAndQuery::try_from(format!("/{method}")).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let answer = if method.ends_with("/WatchDeployments") {
        grpc.server_streaming(request, path, codec).await.map(|_| ())
    } else {
        grpc.unary(request, path, codec).await.map(|_| ())
    };
    answer.err().map_or(Code::Ok, |status| status.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_against_every_role() {
    let server = common::start_server(Backend::Sqlite).await;
    let served: Vec<String> = eucora_services::server::served_methods()
        .into_iter()
        .filter_map(|method| method.strip_prefix("eucora.v1.").map(str::to_owned))
        .collect();
    let listed: Vec<&str> = NEEDS.iter().map(|(method, _)| *method).collect();
    assert_eq!(served.len(), listed.len(), "every served RPC is in the table: {served:?}");
    for (method, needed) in NEEDS {
        let method = format!("eucora.v1.{method}");
        for token in [ADMIN, OPERATOR, APPROVER, VIEWER, REPORTER] {
            let code = call(&server.raw, &method, Some(&format!("Bearer {token}"))).await;
            let denied = code == Code::PermissionDenied;
            assert_eq!(!denied, may(token, needed), "{method} as {token}: {code:?}");
            assert_ne!(code, Code::Unauthenticated, "{method} as {token}");
        }
        for credentials in
            [None, Some("Bearer dev-mallory"), Some("dev-alice"), Some("Basic ZGV2OmRldg=="), Some("Bearer ")]
        {
            assert_eq!(
                call(&server.raw, &method, credentials).await,
                Code::Unauthenticated,
                "{method}, {credentials:?}"
            );
        }
    }
    // grpc.health.v1 and reflection need no credentials.
    assert_eq!(call(&server.raw, "grpc.health.v1.Health/Check", None).await, Code::Ok);

    // A refusal names the role needed, never what would help a guesser.
    let mut viewer = server.deployments_as(VIEWER);
    let denied =
        assert_code(viewer.create_deployment(create_request("denied", "vlc", 10)).await, Code::PermissionDenied);
    assert!(denied.message().contains("operator role") && denied.message().contains("victor"), "{}", denied.message());
    let mut anonymous = DeploymentServiceClient::new(server.raw.clone());
    let refused =
        assert_code(anonymous.list_deployments(pb::ListDeploymentsRequest::default()).await, Code::Unauthenticated);
    assert!(!refused.message().contains("dev-"), "{}", refused.message());

    // Both are counted, by reason and by role; no identity is a label.
    let m = scrape(&server).await;
    assert!(m.value("auth_failures_total", &[("reason", "missing")]) >= 36.0);
    assert!(m.value("auth_failures_total", &[("reason", "invalid")]) >= 36.0);
    assert!(m.value("auth_failures_total", &[("reason", "malformed")]) >= 72.0);
    assert!(m.value("auth_denied_total", &[("role", "admin")]) >= 1.0);
    assert!(m.value("auth_denied_total", &[("role", "operator")]) >= 1.0);
    assert!(m.find("auth_denied_total", &[]).iter().all(|series| !series.labels.contains_key("identity")));
    server.stop().await;
}

/// An auth file with `entries`, and the tokens generated for them, in order.
fn auth_file(dir: &std::path::Path, entries: &[(&str, &[Role])]) -> (std::path::PathBuf, Vec<String>) {
    let path = dir.join("auth.toml");
    let tokens = entries
        .iter()
        .map(|(name, roles)| {
            let (token, entry) = tokens::generate(name, roles);
            tokens::append(&path, &entry).unwrap();
            token
        })
        .collect();
    (path, tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separation_of_duties_compares_identities_from_the_auth_file() {
    let dir = tempfile::tempdir().unwrap();
    // dana may both operate and approve: never her own submissions.
    let (path, tokens) =
        auth_file(dir.path(), &[("dana", &[Role::Operator, Role::Approver]), ("erin", &[Role::Approver])]);
    let options =
        Options { auth: AuthConfig { auth_file: Some(path.clone()), ..AuthConfig::default() }, ..Options::default() };
    let server = common::start_server_with(Backend::Sqlite, options).await;
    let mut dana = server.deployments_as(&tokens[0]);
    let created = dana.create_deployment(create_request("sod", "kernel-driver", 90)).await.unwrap().into_inner();
    let created = created.deployment.unwrap();
    assert_eq!((created.submitter.as_str(), created.status()), ("dana", pb::DeploymentStatus::AwaitingCab));
    let approve = pb::ApproveDeploymentRequest { deployment_id: created.id.clone(), ..Default::default() };
    let own = assert_code(dana.approve_deployment(approve.clone()).await, Code::PermissionDenied);
    assert!(own.message().contains("separation of duties"), "{}", own.message());
    let approved = server.deployments_as(&tokens[1]).approve_deployment(approve).await.unwrap().into_inner();
    assert_eq!(approved.deployment.unwrap().cab_approver, "erin");
    // The development tokens are not accepted without --dev-auth.
    assert_code(
        server.deployments_as(ADMIN).list_deployments(pb::ListDeploymentsRequest::default()).await,
        Code::Unauthenticated,
    );

    // A new identity works once the file changes, with no restart.
    let (frank, entry) = tokens::generate("frank", &[Role::Viewer]);
    let mut frank_client = server.deployments_as(&frank);
    assert_code(frank_client.list_deployments(pb::ListDeploymentsRequest::default()).await, Code::Unauthenticated);
    tokens::append(&path, &entry).unwrap();
    common::eventually("the changed auth file to be read", Duration::from_secs(10), || {
        let mut client = frank_client.clone();
        async move { client.list_deployments(pb::ListDeploymentsRequest::default()).await.ok() }
    })
    .await;
    server.stop().await;
}
