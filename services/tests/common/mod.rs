//! Test harness: starts the real server on an ephemeral port against a fresh
//! SQLite file or a fresh PostgreSQL database (dropped afterwards) and hands
//! out generated clients.
#![allow(dead_code)]

pub mod exposition;
pub mod proxy;
pub mod rollout;

use std::sync::Arc;
use std::time::Duration;

use eucora::auth::{Authenticated, Bearer};
use eucora::v1 as pb;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use eucora::v1::ring_promotion_service_client::RingPromotionServiceClient;
use eucora_otel::{MetricsPipeline, ServiceIdentity};
use eucora_services::auth::AuthConfig;
use eucora_services::clock::Clock;
use eucora_services::connectors::egress::EgressPolicy;
use eucora_services::grpc::admission::AdmissionLimits;
use eucora_services::server::{self, Listeners, ServeOptions, Telemetry};
use eucora_services::store::secrets::SecretKey;
use eucora_services::store::{Store, StoreConfig};
use sea_orm::{ConnectionTrait, Database};
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;

/// Where PostgreSQL tests create their databases (trust auth on this machine and in CI).
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
pub struct TestDatabase {
    pub url: String,
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("eucora.db").display());
                TestDatabase { url, postgres_name: None, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let name = format!("eucora_test_{}", uuid::Uuid::new_v4().simple());
                admin_execute(&format!("CREATE DATABASE {name}")).await;
                TestDatabase {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    postgres_name: Some(name),
                    _dir: None,
                }
            }
        }
    }

    /// A store on this database, migrated (the database must outlive it).
    pub async fn migrated_store(&self) -> Store {
        let store = Store::connect(&StoreConfig::new(&self.url)).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// A SQLite file at `path`, left in place afterwards (the caller owns the directory).
    pub fn sqlite_at(path: &std::path::Path) -> TestDatabase {
        TestDatabase { url: format!("sqlite://{}", path.display()), postgres_name: None, _dir: None }
    }

    /// PostgreSQL only: the same database reached through `addr` (a proxy).
    pub fn route_through(mut self, addr: std::net::SocketAddr) -> TestDatabase {
        self.url = self.url.replace("127.0.0.1:5432", &addr.to_string());
        self
    }

    /// PostgreSQL only: refuse new connections and cut the existing ones.
    pub async fn take_offline(&self) {
        let name = self.postgres_name.as_deref().expect("PostgreSQL only");
        admin_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
        admin_execute(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            .await;
    }

    /// PostgreSQL only: accept connections again.
    pub async fn bring_online(&self) {
        let name = self.postgres_name.as_deref().expect("PostgreSQL only");
        admin_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.postgres_name.take() {
            // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(admin_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
            })
            .join()
            .expect("dropping the test database");
        }
    }
}

async fn admin_execute(sql: &str) {
    let admin = Database::connect(POSTGRES_ADMIN_URL).await.expect("PostgreSQL on 127.0.0.1:5432 (.ci/run starts it)");
    admin.execute_unprepared(sql).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
    admin.close().await.expect("close admin connection");
}

/// A running server and the means to stop it.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    /// Address of the /metrics shim.
    pub metrics_addr: std::net::SocketAddr,
    pub pipeline: MetricsPipeline,
    /// Calls carry the development admin's token ([`ADMIN`]).
    pub channel: Authenticated,
    /// Calls carry no credentials.
    pub raw: Channel,
    pub store: Arc<Store>,
    pub database: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), server::ServeError>>>,
}

pub struct Options {
    pub event_feed_capacity: usize,
    pub health_probe_interval: Duration,
    pub clock: Clock,
    /// The rollout controller is off unless a test turns it on.
    pub controller_interval: Option<Duration>,
    pub connection_limits: eucora_services::net::ConnectionLimits,
    pub max_streams_per_connection: u32,
    pub max_watch_streams: usize,
    /// Longest one database operation may take.
    pub operation_timeout: Duration,
    pub shutdown_grace: Duration,
    pub connector_probe_interval: Duration,
    /// Retries of queued connector work; long unless a test wants them.
    pub delivery_retry_interval: Duration,
    /// Identities: the development tokens unless a test says otherwise.
    pub auth: AuthConfig,
    /// Test adapters listen on loopback: allowed unless a test says otherwise.
    pub allow_loopback_connectors: bool,
    /// Seals connector tokens: the development key unless a test says otherwise.
    pub secret_key: Option<SecretKey>,
    /// Admission limits: the server's defaults, but no rate limit (races and floods are tests' business).
    pub admission: AdmissionLimits,
    pub default_deadline: Duration,
    pub max_watch_streams_per_identity: usize,
    /// TLS on both listeners; the harness's own channels then do not connect (a test brings its own).
    pub tls: Option<eucora_services::tls::TlsFiles>,
    pub scrape_token: Option<String>,
    /// Coordination through Redis (none: in process).
    pub redis: Option<eucora_services::server::RedisOptions>,
    /// Alertmanager's webhook (none: not served).
    pub stop_the_line: Option<eucora_services::alerts::StopTheLineOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            event_feed_capacity: 4096,
            health_probe_interval: Duration::from_millis(100),
            clock: Clock::system(),
            controller_interval: None,
            connection_limits: eucora_services::net::ConnectionLimits::default(),
            max_streams_per_connection: 256,
            max_watch_streams: 1024,
            operation_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            connector_probe_interval: Duration::from_secs(3600),
            delivery_retry_interval: Duration::from_secs(3600),
            auth: AuthConfig { dev_auth: true, ..AuthConfig::default() },
            allow_loopback_connectors: true,
            secret_key: Some(SecretKey::development()),
            admission: AdmissionLimits { rate_per_identity: None, ..AdmissionLimits::default() },
            default_deadline: Duration::from_secs(60),
            max_watch_streams_per_identity: 64,
            tls: None,
            scrape_token: None,
            redis: None,
            stop_the_line: None,
        }
    }
}

/// A clock tests move by hand: the system time plus an offset.
#[derive(Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn clock(&self) -> Clock {
        let (offset, system) = (self.0.clone(), Clock::system());
        Clock::from_fn(move || system.now() + chrono::Duration::milliseconds(offset.load(Ordering::SeqCst)))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(i64::try_from(by.as_millis()).unwrap(), Ordering::SeqCst);
    }
}

pub async fn start_server(backend: Backend) -> TestServer {
    start_server_with(backend, Options::default()).await
}

pub async fn start_server_with(backend: Backend, options: Options) -> TestServer {
    start_server_on(TestDatabase::create(backend).await, options).await
}

/// Starts a server on an existing database (a restart keeps its data).
pub async fn start_server_on(database: TestDatabase, options: Options) -> TestServer {
    let config = StoreConfig {
        acquire_timeout: Duration::from_secs(1),
        event_feed_capacity: options.event_feed_capacity,
        operation_timeout: options.operation_timeout,
        secret_key: options.secret_key.clone(),
        ..StoreConfig::new(database.url.clone())
    };
    let store = Arc::new(Store::connect(&config).await.expect("connect"));
    store.migrate().await.expect("migrate");
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind metrics");
    let addr = grpc.local_addr().unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let identity = ServiceIdentity {
        name: "eucora".into(),
        version: "test".into(),
        instance_id: uuid::Uuid::new_v4().to_string(),
    };
    let pipeline = MetricsPipeline::new(&identity).expect("metrics pipeline");
    let (tx, rx) = oneshot::channel();
    let serve_options = ServeOptions {
        health_probe_interval: options.health_probe_interval,
        health_probe_timeout: Duration::from_secs(1),
        shutdown_grace: options.shutdown_grace,
        connector_probe_interval: options.connector_probe_interval,
        connector_retry: eucora_services::connectors::RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        // Instant simulators that report nothing: tests report outcomes themselves.
        simulator_connectors: Some(eucora_services::domain::connector::SimulatorConfig {
            latency: Duration::ZERO,
            failure_rate: 0.0,
            device_count: 0,
        }),
        clock: options.clock,
        controller_interval: options.controller_interval,
        lease_period: Duration::from_secs(10),
        connection_limits: options.connection_limits,
        max_streams_per_connection: options.max_streams_per_connection,
        max_watch_streams: options.max_watch_streams,
        delivery_retry_interval: options.delivery_retry_interval,
        auth: options.auth,
        egress: EgressPolicy { allow_loopback: options.allow_loopback_connectors },
        admission: options.admission,
        default_deadline: options.default_deadline,
        max_watch_streams_per_identity: options.max_watch_streams_per_identity,
        tls: options.tls.clone(),
        scrape_token: options.scrape_token.clone(),
        redis: options.redis.clone(),
        stop_the_line: options.stop_the_line.clone(),
    };
    let task = tokio::spawn(server::serve(
        Listeners { grpc, metrics },
        store.clone(),
        Telemetry::new(pipeline.clone()),
        serve_options,
        async move {
            let _ = rx.await;
        },
    ));
    let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
    let raw = match options.tls {
        Some(_) => endpoint.connect_lazy(),
        None => endpoint.connect().await.expect("connect to server"),
    };
    let channel = authenticated(&raw, ADMIN);
    TestServer { addr, metrics_addr, pipeline, raw, channel, store, database, shutdown: Some(tx), task: Some(task) }
}

/// The development tokens (`--dev-auth`) tests call with.
pub const ADMIN: &str = "dev-carol";
pub const OPERATOR: &str = "dev-alice";
pub const APPROVER: &str = "dev-bob";
pub const VIEWER: &str = "dev-victor";
pub const REPORTER: &str = "dev-agent";

/// `channel` with calls carrying `token`.
pub fn authenticated(channel: &Channel, token: &str) -> Authenticated {
    tonic::service::interceptor::InterceptedService::new(channel.clone(), Bearer::new(token).expect("a valid token"))
}

impl TestServer {
    /// Calls as the development admin (`carol`).
    pub fn deployments(&self) -> DeploymentServiceClient<Authenticated> {
        DeploymentServiceClient::new(self.channel.clone())
    }

    /// Calls as the identity holding `token`.
    pub fn deployments_as(&self, token: &str) -> DeploymentServiceClient<Authenticated> {
        DeploymentServiceClient::new(self.channel_as(token))
    }

    pub fn promotions(&self) -> RingPromotionServiceClient<Authenticated> {
        RingPromotionServiceClient::new(self.channel.clone())
    }

    /// The server's channel with calls carrying `token`.
    pub fn channel_as(&self, token: &str) -> Authenticated {
        authenticated(&self.raw, token)
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("graceful shutdown finishes")
                .expect("server task")
                .expect("server result");
        }
    }

    /// Stops the server, closes its database connections and hands the
    /// database back, as a process exit would, so a test can restart on it.
    pub async fn shut_down(mut self) -> TestDatabase {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await.expect("shutdown finishes");
        }
        drop((self.channel, self.raw));
        if let Ok(store) = Arc::try_unwrap(self.store) {
            store.close().await;
        }
        self.database
    }
}

pub fn evidence_pack_id() -> String {
    "6f1c1f9e-3d2a-4c4b-9a57-0d8f7c9b1e11".to_owned()
}

/// Evidence that the default risk model scores above 50 (CAB needed) when
/// `risky`, and low otherwise.
pub fn evidence(risky: bool) -> pb::EvidencePack {
    if risky {
        pb::EvidencePack {
            artifact_sha256: "ab".repeat(32),
            vulnerabilities: Some(pb::VulnerabilityCounts { critical: 1, ..Default::default() }),
            requires_admin: true,
            ..Default::default()
        }
    } else {
        pb::EvidencePack {
            artifact_sha256: "ab".repeat(32),
            sbom: Some(pb::SbomSummary { format: "cyclonedx".into(), component_count: 42 }),
            vulnerabilities: Some(pb::VulnerabilityCounts::default()),
            rollback_plan_present: true,
            rollback_tested: true,
            ..Default::default()
        }
    }
}

/// A create request targeting LAB; `risk` above 50 sends risky evidence.
pub fn create_request(request_id: &str, app_name: &str, risk: i32) -> pb::CreateDeploymentRequest {
    pb::CreateDeploymentRequest {
        request_id: request_id.to_owned(),
        app_name: app_name.to_owned(),
        version: "1.0.0".to_owned(),
        connector_type: pb::ConnectorType::Intune.into(),
        target_ring: pb::Ring::Lab.into(),
        evidence_pack_id: evidence_pack_id(),
        site_class: pb::SiteClass::Online.into(),
        evidence: Some(evidence(risk > 50)),
        ..Default::default()
    }
}

pub async fn create(
    client: &mut DeploymentServiceClient<Authenticated>,
    request_id: &str,
    app: &str,
    risk: i32,
) -> pb::Deployment {
    client
        .create_deployment(create_request(request_id, app, risk))
        .await
        .expect("create")
        .into_inner()
        .deployment
        .unwrap()
}

#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code) -> tonic::Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "message: {}", status.message());
            status
        }
    }
}

/// Generates one test per backend for each scenario `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// GETs `path` from the server's /metrics shim and returns (status, content type, body).
pub async fn http_get(server: &TestServer, path: &str) -> (u16, String, String) {
    let response = reqwest::get(format!("http://{}{path}", server.metrics_addr)).await.expect("HTTP GET");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.expect("body"))
}

/// Scrapes /metrics and parses it.
pub async fn scrape(server: &TestServer) -> exposition::Exposition {
    let (status, _, body) = http_get(server, "/metrics").await;
    assert_eq!(status, 200);
    exposition::Exposition::parse(&body)
}

/// Every deployment, walking all the list's pages.
pub async fn all_deployments(client: &mut DeploymentServiceClient<Authenticated>) -> Vec<pb::Deployment> {
    let mut deployments = Vec::new();
    let mut request = pb::ListDeploymentsRequest { page_size: 500, ..Default::default() };
    loop {
        let page = client.list_deployments(request.clone()).await.unwrap().into_inner();
        deployments.extend(page.deployments);
        if page.next_page_token.is_empty() {
            return deployments;
        }
        request.page_token = page.next_page_token;
    }
}

/// The audit trail of one deployment.
pub async fn events_of(client: &mut DeploymentServiceClient<Authenticated>, id: &str) -> Vec<pb::DeploymentEvent> {
    let request = pb::ListDeploymentEventsRequest { deployment_id: id.to_owned(), ..Default::default() };
    client.list_deployment_events(request).await.unwrap().into_inner().events
}

/// Devices each ring's default policy needs reported.
pub fn sample_for(ring: pb::Ring) -> i64 {
    match ring {
        pb::Ring::Lab => 10,
        pb::Ring::Canary => 25,
        pb::Ring::Pilot => 50,
        _ => 100,
    }
}

/// A low-risk deployment targeting GLOBAL, started (in LAB).
pub async fn started(client: &mut DeploymentServiceClient<Authenticated>, request_id: &str) -> pb::Deployment {
    let request =
        pb::CreateDeploymentRequest { target_ring: pb::Ring::Global.into(), ..create_request(request_id, "edge", 20) };
    let created = client.create_deployment(request).await.unwrap().into_inner().deployment.unwrap();
    let start = pb::StartDeploymentRequest { deployment_id: created.id, ..Default::default() };
    client.start_deployment(start).await.unwrap().into_inner().deployment.unwrap()
}

/// Reports a passing outcome for the deployment's current ring (validating the rollback in LAB).
pub async fn report_healthy(client: &mut DeploymentServiceClient<Authenticated>, deployment: &pb::Deployment) {
    let ring = deployment.current_ring();
    let request = pb::ReportRingOutcomeRequest {
        deployment_id: deployment.id.clone(),
        ring: ring.into(),
        success_count: sample_for(ring),
        failure_count: 0,
        rollback_validated: ring == pb::Ring::Lab,
        ..Default::default()
    };
    client.report_ring_outcome(request).await.unwrap();
}

pub fn promote_request(deployment: &pb::Deployment) -> pb::PromoteDeploymentRequest {
    pb::PromoteDeploymentRequest {
        deployment_id: deployment.id.clone(),
        from_ring: deployment.current_ring,
        ..Default::default()
    }
}

/// The health of DeploymentService as grpc.health.v1 reports it.
pub async fn health_of(server: &TestServer) -> tonic_health::pb::health_check_response::ServingStatus {
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let request = tonic_health::pb::HealthCheckRequest { service: "eucora.v1.DeploymentService".into() };
    health.check(request).await.expect("health check").into_inner().status()
}

/// Polls `probe` (every 20 ms, for up to `within`) until it yields a value;
/// panics saying `what` was awaited otherwise. The one way tests wait for
/// something the server does in the background.
pub async fn eventually<T, Fut>(what: &str, within: Duration, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 10 s) for DeploymentService's health to become `wanted`.
pub async fn eventually_health(server: &TestServer, wanted: tonic_health::pb::health_check_response::ServingStatus) {
    let what = format!("health {wanted:?}");
    eventually(&what, Duration::from_secs(10), || async { (health_of(server).await == wanted).then_some(()) }).await
}

/// A `eucora serve` process (the real binary) on ports it picked; killed when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    pub grpc: String,
    pub metrics: String,
}

impl ServerProcess {
    /// Kills the process outright (SIGKILL): no shutdown, no lease given up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{signal}");
    }

    /// What grpc.health.v1 says of `service` ("" for the server as a whole).
    pub async fn health(&self, service: &str) -> Option<tonic_health::pb::health_check_response::ServingStatus> {
        let channel = Channel::from_shared(format!("http://{}", self.grpc)).unwrap().connect_lazy();
        let request = tonic_health::pb::HealthCheckRequest { service: service.to_owned() };
        let answer = tonic_health::pb::health_client::HealthClient::new(channel).check(request).await.ok()?;
        Some(answer.into_inner().status())
    }

    /// A channel to the process's gRPC listener, calling as `token`.
    pub fn channel_as(&self, token: &str) -> Authenticated {
        let channel = Channel::from_shared(format!("http://{}", self.grpc)).unwrap().connect_lazy();
        authenticated(&channel, token)
    }

    /// Parses a scrape of the process's /metrics.
    pub async fn scrape(&self) -> exposition::Exposition {
        let body = reqwest::get(format!("http://{}/metrics", self.metrics)).await.unwrap().text().await.unwrap();
        exposition::Exposition::parse(&body)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts `eucora serve` on `database_url` with port 0 for both listeners,
    /// reads the addresses it logs, and waits until grpc.health.v1 says SERVING.
    pub async fn spawn(database_url: &str) -> ServerProcess {
        ServerProcess::spawn_with(database_url, &[]).await
    }

    /// As [`ServerProcess::spawn`], with more command-line arguments.
    pub async fn spawn_with(database_url: &str, args: &[&str]) -> ServerProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eucora"))
            .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--database-url", database_url, "--log", "warn,eucora=info", "--dev-auth"])
            // No rate limit, as in TestServer: these tests drive one identity far past it on purpose.
            .args(["--rate-limit", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start eucora");
        let stdout = child.stdout.take().expect("piped");
        let listening = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let line = lines.by_ref().map_while(Result::ok).find(|line| line.contains("\"listening\""));
            // Keep draining, so the process never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(30), listening)
            .await
            .expect("eucora said where it listens within 30 s")
            .unwrap()
            .expect("a listening line");
        let fields: serde_json::Value = serde_json::from_str(&line).unwrap();
        let address = |key: &str| fields["fields"][key].as_str().expect("an address").to_owned();
        let process = ServerProcess { child, grpc: address("grpc_addr"), metrics: address("metrics_addr") };
        let channel = Channel::from_shared(format!("http://{}", process.grpc)).unwrap().connect_lazy();
        eventually("the process to be SERVING", Duration::from_secs(30), || {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            async move {
                let answer = health.check(tonic_health::pb::HealthCheckRequest::default()).await.ok()?;
                (answer.into_inner().status() == tonic_health::pb::health_check_response::ServingStatus::Serving)
                    .then_some(())
            }
        })
        .await;
        process
    }
}

/// A create of a group commit, with `request_id` as its fingerprint too.
pub fn new_create<'a>(
    request_id: &'a str,
    (deployment, events): &'a (eucora_services::domain::Deployment, Vec<eucora_services::domain::NewEvent>),
) -> eucora_services::store::NewCreate<'a> {
    eucora_services::store::NewCreate { request_id, fingerprint: request_id, deployment, events }
}

/// Every event of the fleet, read through ListEvents a page (of three) at a time from `after`.
pub async fn list_all_events(
    client: &mut DeploymentServiceClient<Authenticated>,
    after: i64,
) -> Vec<pb::DeploymentEvent> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListEventsRequest { after_sequence: after, page_size: 3, page_token };
        let page = client.list_events(request).await.unwrap().into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

/// A deployment of `app` as the domain creates it (not stored), with its
/// events: version 1.0.0 through Intune to GLOBAL, submitted by alice.
pub fn new_deployment(app: &str) -> (eucora_services::domain::Deployment, Vec<eucora_services::domain::NewEvent>) {
    use eucora_services::domain::{ConnectorType, Deployment, NewDeployment, Ring, SiteClass};
    let new = NewDeployment {
        app_name: app.to_owned(),
        version: "1.0.0".into(),
        connector_type: ConnectorType::Intune,
        connector_name: None,
        target_ring: Ring::Global,
        risk_score: 10,
        evidence_pack_id: uuid::Uuid::new_v4(),
        submitter: "alice".into(),
        site_class: SiteClass::Online,
        evidence: Default::default(),
        assessment: None,
    };
    Deployment::create(uuid::Uuid::now_v7(), new, &Clock::system().context("alice".into(), String::new(), None))
}
