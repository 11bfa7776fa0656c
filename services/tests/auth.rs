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
use eucora_services::auth::{AuthConfig, Role, file, tokens};
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
    ("ControlChangeService/ListControlChanges", "viewer"),
    ("ControlChangeService/GetControlChange", "viewer"),
    ("ControlChangeService/ApproveControlChange", "admin"),
    ("ControlChangeService/RejectControlChange", "admin"),
    ("ControlChangeService/RequestBreakGlass", "operator"),
    ("ChangeCalendarService/CreateChangeWindow", "admin"),
    ("ChangeCalendarService/GetChangeWindow", "viewer"),
    ("ChangeCalendarService/ListChangeWindows", "viewer"),
    ("ChangeCalendarService/UpdateChangeWindow", "admin"),
    ("ChangeCalendarService/DeleteChangeWindow", "admin"),
    ("ChangeCalendarService/GetChangeFreeze", "viewer"),
    ("ChangeCalendarService/SetChangeFreeze", "admin"),
    ("ChangeCalendarService/LiftChangeFreeze", "admin"),
    ("ChangeCalendarService/ListCalendarChanges", "viewer"),
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
            file::append(&path, &entry).unwrap();
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
    file::append(&path, &entry).unwrap();
    common::eventually("the changed auth file to be read", Duration::from_secs(10), || {
        let mut client = frank_client.clone();
        async move { client.list_deployments(pb::ListDeploymentsRequest::default()).await.ok() }
    })
    .await;
    server.stop().await;
}

/// An identity provider for the tests: ES256 signing keys published as a
/// JWKS on loopback, which can rotate its key or go down.
struct Provider {
    url: String,
    jwks: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    key: (String, jsonwebtoken::EncodingKey),
}

const ISSUER: &str = "https://idp.example/tenant";

impl Provider {
    fn key(kid: &str) -> (String, jsonwebtoken::EncodingKey) {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        (kid.to_owned(), jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap())
    }

    fn publish(&self, keys: &[&(String, jsonwebtoken::EncodingKey)]) {
        let keys = keys
            .iter()
            .map(|(kid, key)| {
                let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key, jsonwebtoken::Algorithm::ES256).unwrap();
                jwk.common.key_id = Some(kid.clone());
                jwk
            })
            .collect();
        let set = jsonwebtoken::jwk::JwkSet { keys };
        *self.jwks.lock().unwrap() = Some(serde_json::to_string(&set).unwrap());
    }

    async fn start() -> Provider {
        let jwks = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let served = jwks.clone();
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let served = served.lock().unwrap().clone();
                async move { served.ok_or(http::StatusCode::SERVICE_UNAVAILABLE) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let provider = Provider { url, jwks, key: Provider::key("k1") };
        provider.publish(&[&provider.key]);
        provider
    }

    /// A token signed by `key` with these claims over the defaults (issuer,
    /// audience, a name, valid for an hour).
    fn sign_with(key: &(String, jsonwebtoken::EncodingKey), claims: serde_json::Value) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let mut all = serde_json::json!({
            "iss": ISSUER, "aud": "eucora", "sub": "0f3a", "preferred_username": "olivia@contoso.example",
            "iat": now, "exp": now + 3600, "groups": ["eucora-ops"],
        });
        all.as_object_mut().unwrap().extend(claims.as_object().unwrap().clone());
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(key.0.clone());
        jsonwebtoken::encode(&header, &all, &key.1).unwrap()
    }

    fn sign(&self, claims: serde_json::Value) -> String {
        Provider::sign_with(&self.key, claims)
    }
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_from_the_identity_provider_are_checked_before_they_are_trusted() {
    let provider = Provider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    let settings = format!(
        "[oidc]\nissuer = \"{ISSUER}\"\naudience = \"eucora\"\njwks_url = \"{}\"\nname_claim = \"preferred_username\"\n\
         roles_claim = \"groups\"\nunknown_key_refetch = \"200ms\"\n\n[oidc.roles_map]\neucora-ops = [\"operator\"]\n\
         eucora-cab = [\"approver\"]\n",
        provider.url
    );
    std::fs::write(&path, settings).unwrap();
    let options = Options { auth: AuthConfig { auth_file: Some(path), ..AuthConfig::default() }, ..Options::default() };
    let server = common::start_server_with(Backend::Sqlite, options).await;

    // A good token: the name claim is the identity, the mapped group its role.
    let olivia = provider.sign(serde_json::json!({}));
    let created = server.deployments_as(&olivia).create_deployment(create_request("jwt", "kernel-driver", 90)).await;
    let created = created.expect("a valid JWT is accepted").into_inner().deployment.unwrap();
    assert_eq!(created.submitter, "olivia@contoso.example");
    let events = server
        .deployments_as(&olivia)
        .list_deployment_events(pb::ListDeploymentEventsRequest {
            deployment_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events[0].kind(), pb::DeploymentEventKind::Created);
    assert_eq!(events[0].actor, "olivia@contoso.example", "the audit trail names the caller");
    // Separation of duties holds between identities from the provider too.
    let approve = pb::ApproveDeploymentRequest { deployment_id: created.id.clone(), ..Default::default() };
    let self_approval = provider.sign(serde_json::json!({"groups": ["eucora-ops", "eucora-cab"]}));
    assert_code(
        server.deployments_as(&self_approval).approve_deployment(approve.clone()).await,
        Code::PermissionDenied,
    );
    let peter =
        provider.sign(serde_json::json!({"preferred_username": "peter@contoso.example", "groups": ["eucora-cab"]}));
    let approved = server.deployments_as(&peter).approve_deployment(approve).await.unwrap().into_inner();
    assert_eq!(approved.deployment.unwrap().cab_approver, "peter@contoso.example");
    // A group the mapping does not know grants nothing.
    let outsider = provider.sign(serde_json::json!({"groups": ["operator", "everyone"]}));
    assert_code(
        server.deployments_as(&outsider).list_deployments(pb::ListDeploymentsRequest::default()).await,
        Code::PermissionDenied,
    );

    // Tokens that must not get in.
    let now = jsonwebtoken::get_current_timestamp();
    let stranger = Provider::key("k1");
    let unsigned = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(serde_json::json!({"iss": ISSUER, "aud": "eucora", "preferred_username": "mallory", "exp": now + 3600, "groups": ["eucora-ops"]}).to_string().as_bytes())
    );
    let hmac = {
        let claims = serde_json::json!({"iss": ISSUER, "aud": "eucora", "preferred_username": "mallory", "exp": now + 3600, "groups": ["eucora-ops"]});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(b"k1").unwrap()).unwrap()
    };
    let refused = [
        ("expired", provider.sign(serde_json::json!({"iat": now - 7200, "exp": now - 3600}))),
        ("not yet valid", provider.sign(serde_json::json!({"nbf": now + 3600}))),
        ("wrong issuer", provider.sign(serde_json::json!({"iss": "https://evil.example"}))),
        ("wrong audience", provider.sign(serde_json::json!({"aud": "another-app"}))),
        ("no expiry", provider.sign(serde_json::json!({"exp": null}))),
        ("signed by another key under the same kid", Provider::sign_with(&stranger, serde_json::json!({}))),
        ("alg none", unsigned),
        ("HMAC with a guessable secret", hmac),
        ("a tampered payload", {
            let mut parts: Vec<String> = olivia.split('.').map(str::to_owned).collect();
            parts[1] = base64url(serde_json::json!({"iss": ISSUER, "aud": "eucora", "preferred_username": "mallory", "exp": now + 3600, "groups": ["eucora-ops"]}).to_string().as_bytes());
            parts.join(".")
        }),
    ];
    for (what, token) in refused {
        let answer = server.deployments_as(&token).list_deployments(pb::ListDeploymentsRequest::default()).await;
        assert_eq!(answer.map(|_| ()).unwrap_err().code(), Code::Unauthenticated, "{what}");
    }

    // The provider rotates its key: a token under the new one is accepted
    // at once (the keys are fetched again), the old key's are not.
    let next = Provider::key("k2");
    provider.publish(&[&next]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rotated = Provider::sign_with(&next, serde_json::json!({}));
    server.deployments_as(&rotated).list_deployments(pb::ListDeploymentsRequest::default()).await.expect("the new key");
    assert_code(
        server.deployments_as(&olivia).list_deployments(pb::ListDeploymentsRequest::default()).await,
        Code::Unauthenticated,
    );

    // The provider goes down: keys already fetched keep working; a token
    // under a key not seen yet cannot be checked, and that is counted.
    *provider.jwks.lock().unwrap() = None;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unseen = Provider::sign_with(&Provider::key("k3"), serde_json::json!({}));
    assert_code(
        server.deployments_as(&unseen).list_deployments(pb::ListDeploymentsRequest::default()).await,
        Code::Unauthenticated,
    );
    server.deployments_as(&rotated).list_deployments(pb::ListDeploymentsRequest::default()).await.expect("cached key");

    let m = scrape(&server).await;
    assert!(m.value("auth_failures_total", &[("reason", "expired")]) >= 2.0);
    assert!(m.value("auth_failures_total", &[("reason", "invalid")]) >= 7.0);
    assert_eq!(m.value("auth_failures_total", &[("reason", "keys_unavailable")]), 1.0);
    server.stop().await;
}
