//! TLS end to end, with certificates made in the test: gRPC over TLS with
//! client certificates (mTLS) — a client without one, or without TLS, does
//! not get in; a certificate the auth file maps to an identity is that
//! identity — a certificate replaced on SIGHUP without dropping the
//! connections already open, and /metrics over the same TLS asking for the
//! scrape token.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{ADMIN, Backend, Options};
use eucora::v1 as pb;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use eucora_services::auth::AuthConfig;
use eucora_services::tls::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A CA, and what it signs.
struct Authority(CertifiedIssuer<'static, KeyPair>);

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Authority(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    /// A leaf for `names`: (certificate PEM, key PEM).
    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        (params.signed_by(&key, &self.0).unwrap().pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn client(addr: &str, ca: &str, identity: Option<&(String, String)>) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(tls)?.connect().await
}

async fn list_as_admin(channel: &Channel) -> Result<(), tonic::Status> {
    let mut deployments = DeploymentServiceClient::new(common::authenticated(channel, ADMIN));
    deployments.list_deployments(pb::ListDeploymentsRequest::default()).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_client_certificates_with_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca) = (Authority::new("server CA"), Authority::new("client CA"));
    let (cert, key) = server_ca.issue(&["localhost"]);
    let files = TlsFiles {
        cert: write(dir.path(), "server.pem", &cert),
        key: write(dir.path(), "server.key", &key),
        client_ca: Some(write(dir.path(), "clients.pem", &client_ca.pem())),
    };
    let auth_file = write(
        dir.path(),
        "auth.toml",
        "[[identity]]\nname = \"monitor\"\nroles = [\"viewer\"]\nclient_certificate = \"monitor-1.example\"\n",
    );
    let options = Options {
        tls: Some(files.clone()),
        scrape_token: Some("scrape-s3cret".into()),
        auth: AuthConfig { auth_file: Some(auth_file), dev_auth: true, ..AuthConfig::default() },
        ..Options::default()
    };
    let server = common::start_server_with(Backend::Sqlite, options).await;
    let addr = server.addr.to_string();
    let agent = client_ca.issue(&["agent-1"]);

    // With a client certificate: calls go through with a bearer token; a
    // certificate the auth file does not name is nobody on its own.
    let channel = client(&addr, &server_ca.pem(), Some(&agent)).await.expect("an mTLS connection");
    list_as_admin(&channel).await.expect("an authenticated call over mTLS");
    let list = pb::ListDeploymentsRequest::default();
    let unnamed = DeploymentServiceClient::new(channel.clone()).list_deployments(list.clone()).await;
    assert_eq!(unnamed.unwrap_err().code(), tonic::Code::Unauthenticated);
    // A certificate the auth file names is its identity, with that identity's roles.
    let monitor = client_ca.issue(&["monitor-1.example"]);
    let monitor = client(&addr, &server_ca.pem(), Some(&monitor)).await.unwrap();
    let mut monitor = DeploymentServiceClient::new(monitor);
    monitor.list_deployments(list).await.expect("the certificate's identity may read");
    let create = monitor.create_deployment(common::create_request("mtls", "agent", 10)).await;
    let denied = create.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(denied.message().contains("monitor"), "{}", denied.message());
    // Without one, or without TLS at all: no way in.
    let anonymous = match client(&addr, &server_ca.pem(), None).await {
        Ok(channel) => list_as_admin(&channel).await.is_err(),
        Err(_) => true,
    };
    assert!(anonymous, "a client without a certificate was served");
    let plain = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await;
    let plain = match plain {
        Ok(channel) => list_as_admin(&channel).await.is_err(),
        Err(_) => true,
    };
    assert!(plain, "a plain-text client was served");

    // /metrics over the same TLS, with the scrape token.
    let identity = reqwest::Identity::from_pem(format!("{}{}", agent.1, agent.0).as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(server_ca.pem().as_bytes()).unwrap())
        .identity(identity)
        .build()
        .unwrap();
    let metrics = format!("https://localhost:{}/metrics", server.metrics_addr.port());
    assert_eq!(http.get(&metrics).send().await.unwrap().status(), 401, "no scrape token");
    let scraped = http.get(&metrics).bearer_auth("scrape-s3cret").send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("deployments_current"));

    // A certificate from another CA replaces it on SIGHUP: new connections
    // get it, the open one is not dropped.
    let next_ca = Authority::new("next server CA");
    let (cert, key) = next_ca.issue(&["localhost"]);
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    let status = std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status().unwrap();
    assert!(status.success());
    common::eventually("the new certificate to be served", Duration::from_secs(10), || {
        let (addr, ca, agent) = (addr.clone(), next_ca.pem(), agent.clone());
        async move { client(&addr, &ca, Some(&agent)).await.ok() }
    })
    .await;
    assert!(client(&addr, &server_ca.pem(), Some(&agent)).await.is_err(), "the old certificate is gone");
    list_as_admin(&channel).await.expect("the connection opened before the reload still works");
    server.stop().await;
}
