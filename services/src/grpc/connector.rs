//! ConnectorService adapter: validates connector definitions (secrets never
//! echoed), calls the registry use-cases, and converts their answers.

use crate::domain::Label;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eucora::v1 as pb;
use eucora::v1::connector_service_server::ConnectorService;
use tonic::{Request, Response, Status};

use super::change_context;
use super::convert::Wire;
use super::convert::{self, duration_to_proto, timestamp};
use super::page_token::Scope;
use super::validate::{MAX_ETAG_LEN, MAX_REQUEST_ID_LEN, Violations, truncate};
use crate::app::{AppError, AppResult, ConnectorRegistry};
use crate::clock::stored_time;
use crate::connectors::BreakerView;
use crate::domain::breaker::BreakerConfig;
use crate::domain::connector::{ConnectorDef, Driver, Health, NAME_RULE, SimulatorConfig, is_valid_name};
use crate::domain::{Change, ConnectorType};

const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 500;
const MAX_TOKEN_LEN: usize = 4096;
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The ConnectorService implementation.
#[derive(Clone)]
pub struct ConnectorApi {
    app: ConnectorRegistry,
}

impl ConnectorApi {
    pub fn new(app: ConnectorRegistry) -> ConnectorApi {
        ConnectorApi { app }
    }

    fn now(&self) -> DateTime<Utc> {
        stored_time(self.app.clock().now())
    }
}

/// The connector name in `field`, checked before it reaches the store.
fn valid_name<'a>(field: &str, name: &'a str) -> AppResult<&'a str> {
    if name.is_empty() {
        return Err(AppError::invalid(field, "is required"));
    }
    // A name no connector can have is bad input, and is never echoed back whole.
    if !is_valid_name(name) {
        return Err(AppError::invalid(field, NAME_RULE));
    }
    Ok(name)
}

/// Fields UpdateConnector may change (`update_mask` paths).
const UPDATABLE: &[&str] = &["endpoint", "auth_token", "enabled", "call_timeout", "breaker", "simulator"];

/// `base` with the fields of `input` named by `paths` (all when `paths` is
/// empty), or a new definition when `base` is `None`; validated.
fn connector_from_input(
    input: &pb::Connector,
    base: Option<&ConnectorDef>,
    paths: &[String],
    now: DateTime<Utc>,
) -> AppResult<ConnectorDef> {
    let mut v = Violations::new();
    let wanted = |field: &str| base.is_none() || paths.is_empty() || paths.iter().any(|p| p == field);
    let mut def = match base {
        Some(base) => base.clone(),
        None => ConnectorDef {
            name: input.name.clone(),
            connector_type: v
                .enumeration::<pb::ConnectorType>("connector.connector_type", input.connector_type, true)
                .and_then(ConnectorType::from_proto)
                .unwrap_or(crate::domain::ConnectorType::Intune),
            driver: v
                .enumeration::<pb::ConnectorDriver>("connector.driver", input.driver, true)
                .and_then(Driver::from_proto)
                .unwrap_or(Driver::Http),
            endpoint: None,
            auth_token: None,
            enabled: true,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            breaker: BreakerConfig::default(),
            simulator: SimulatorConfig::default(),
            health: None,
            revision: 0,
            created_at: now,
            updated_at: now,
        },
    };
    for path in paths {
        if !UPDATABLE.contains(&path.as_str()) {
            v.add(
                "update_mask",
                format!("unknown or fixed field {:?}; updatable: {}", truncate(path), UPDATABLE.join(", ")),
            );
        }
    }
    if wanted("endpoint") {
        def.endpoint = v.optional_text("connector.endpoint", &input.endpoint, 2048);
    }
    // The token is write-only: an update leaves it alone unless it sends one
    // or names `auth_token` in the mask (empty then clears it). A token is
    // for the endpoint it was given with: moving the endpoint drops it, so
    // that it is never sent to a host its owner did not pick.
    let token_named = paths.iter().any(|p| p == "auth_token");
    if wanted("auth_token") && (base.is_none() || !input.auth_token.is_empty() || token_named) {
        def.auth_token = v.optional_text("connector.auth_token", &input.auth_token, MAX_TOKEN_LEN);
    } else if base.is_some_and(|base| base.endpoint != def.endpoint) {
        def.auth_token = None;
    }
    if wanted("enabled") {
        def.enabled = input.enabled;
    }
    if wanted("call_timeout")
        && let Some(timeout) = v.duration("connector.call_timeout", input.call_timeout.as_ref())
    {
        def.call_timeout = timeout;
    }
    if wanted("breaker")
        && let Some(breaker) = &input.breaker
    {
        {
            if breaker.fail_max != 0 {
                def.breaker.fail_max = u32::try_from(breaker.fail_max).unwrap_or(0);
            }
            if let Some(reset) = v.duration("connector.breaker.reset_timeout", breaker.reset_timeout.as_ref()) {
                def.breaker.reset_timeout = reset;
            }
        }
    }
    if wanted("simulator")
        && let Some(simulator) = &input.simulator
    {
        {
            if let Some(latency) = v.duration("connector.simulator.latency", simulator.latency.as_ref()) {
                def.simulator.latency = latency;
            }
            def.simulator.failure_rate = simulator.failure_rate;
            def.simulator.device_count = u64::try_from(simulator.device_count).unwrap_or_else(|_| {
                v.add("connector.simulator.device_count", "must not be negative");
                0
            });
        }
    }
    if let Some(problem) = def.endpoint.as_deref().and_then(endpoint_problem) {
        v.add("connector.endpoint", problem);
    }
    for (field, problem) in def.problems() {
        v.add(field, problem);
    }
    v.finish()?;
    def.updated_at = now;
    Ok(def)
}

/// What is wrong with an adapter's base URL, if anything.
fn endpoint_problem(endpoint: &str) -> Option<&'static str> {
    match url::Url::parse(endpoint) {
        Err(_) => Some("must be an http:// or https:// URL"),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => Some("must be an http:// or https:// URL"),
        Ok(url) if url.host().is_none() => Some("must name a host"),
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            Some("must not carry credentials: set auth_token instead")
        }
        Ok(url) if url.query().is_some() || url.fragment().is_some() => Some("must not have a query or fragment"),
        Ok(_) => None,
    }
}

fn health_to_proto(health: Option<&Health>) -> pb::ConnectorHealth {
    match health {
        None => pb::ConnectorHealth::default(),
        Some(h) => pb::ConnectorHealth {
            status: if h.healthy { pb::ConnectorHealthStatus::Healthy } else { pb::ConnectorHealthStatus::Unhealthy }
                .into(),
            last_error: h.last_error.clone().unwrap_or_default(),
            last_check_time: Some(timestamp(h.checked_at)),
        },
    }
}

fn breaker_config_to_proto(config: BreakerConfig) -> pb::CircuitBreakerConfig {
    pb::CircuitBreakerConfig {
        fail_max: i32::try_from(config.fail_max).unwrap_or(i32::MAX),
        reset_timeout: Some(duration_to_proto(config.reset_timeout)),
    }
}

/// The definition as the API shows it: the auth token is never returned.
fn connector_to_proto(def: &ConnectorDef) -> pb::Connector {
    pb::Connector {
        name: def.name.clone(),
        connector_type: def.connector_type.to_proto().into(),
        driver: def.driver.to_proto().into(),
        endpoint: def.endpoint.clone().unwrap_or_default(),
        auth_token: String::new(),
        has_auth_token: def.auth_token.is_some(),
        enabled: def.enabled,
        call_timeout: Some(duration_to_proto(def.call_timeout)),
        breaker: Some(breaker_config_to_proto(def.breaker)),
        simulator: Some(pb::SimulatorConfig {
            latency: Some(duration_to_proto(def.simulator.latency)),
            failure_rate: def.simulator.failure_rate,
            device_count: i64::try_from(def.simulator.device_count).unwrap_or(i64::MAX),
        }),
        health: Some(health_to_proto(def.health.as_ref())),
        create_time: Some(timestamp(def.created_at)),
        update_time: Some(timestamp(def.updated_at)),
        etag: convert::etag(def.revision),
    }
}

fn breaker_to_proto(name: &str, view: &BreakerView) -> pb::CircuitBreaker {
    pb::CircuitBreaker {
        connector_name: name.to_owned(),
        state: view.state.to_proto().into(),
        consecutive_failures: i32::try_from(view.breaker.consecutive_failures()).unwrap_or(i32::MAX),
        config: Some(breaker_config_to_proto(view.breaker.config())),
        open_time: view.breaker.opened_at().map(timestamp),
        next_attempt_time: view.breaker.retry_at().map(timestamp),
        last_error: view.breaker.last_error().unwrap_or_default().to_owned(),
        etag: view.etag(),
    }
}

fn change_to_proto(change: &Change<ConnectorDef>) -> pb::ConnectorChange {
    pb::ConnectorChange {
        sequence: change.seq,
        connector_name: change.after.as_ref().or(change.before.as_ref()).map(|d| d.name.clone()).unwrap_or_default(),
        kind: change.kind.to_proto().into(),
        before: change.before.as_ref().map(connector_to_proto),
        after: change.after.as_ref().map(connector_to_proto),
        actor: change.actor.clone(),
        reason: change.reason.clone(),
        correlation_id: change.correlation_id.clone(),
        create_time: Some(timestamp(change.at)),
    }
}

#[tonic::async_trait]
impl ConnectorService for ConnectorApi {
    async fn create_connector(
        &self,
        request: Request<pb::CreateConnectorRequest>,
    ) -> Result<Response<pb::CreateConnectorResponse>, Status> {
        let req = request.get_ref();
        let Some(input) = req.connector.as_ref() else {
            return Err(AppError::invalid("connector", "is required").into());
        };
        let mut v = Violations::new();
        let request_id = v.optional_text("request_id", &req.request_id, MAX_REQUEST_ID_LEN);
        let reason = v.reason(&req.reason);
        v.finish()?;
        let def = connector_from_input(input, None, &[], self.now())?;
        let ctx = change_context(self.app.clock(), &request, reason);
        let def = self.app.create(def, request_id.as_deref(), &ctx).await?;
        Ok(Response::new(pb::CreateConnectorResponse { connector: Some(connector_to_proto(&def)) }))
    }

    async fn get_connector(
        &self,
        request: Request<pb::GetConnectorRequest>,
    ) -> Result<Response<pb::GetConnectorResponse>, Status> {
        let def = self.app.get(valid_name("connector_name", &request.get_ref().connector_name)?).await?;
        Ok(Response::new(pb::GetConnectorResponse { connector: Some(connector_to_proto(&def)) }))
    }

    async fn list_connectors(
        &self,
        request: Request<pb::ListConnectorsRequest>,
    ) -> Result<Response<pb::ListConnectorsResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let limit = v.page_size("page_size", req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        let connector_type = v
            .enumeration::<pb::ConnectorType>("connector_type", req.connector_type, false)
            .and_then(ConnectorType::from_proto);
        v.finish()?;
        let scope = Scope::new("connectors").with("connector_type", connector_type.map(|t| t.as_label()));
        let after: Option<String> = scope.key(&req.page_token)?;
        let (connectors, more) = self.app.list(connector_type, after.as_deref(), limit).await?;
        let last = connectors.last().filter(|_| more).map(|last| last.name.as_str());
        Ok(Response::new(pb::ListConnectorsResponse {
            connectors: connectors.iter().map(connector_to_proto).collect(),
            next_page_token: scope.token(last),
        }))
    }

    async fn update_connector(
        &self,
        request: Request<pb::UpdateConnectorRequest>,
    ) -> Result<Response<pb::UpdateConnectorResponse>, Status> {
        let req = request.get_ref();
        let Some(input) = req.connector.as_ref() else {
            return Err(AppError::invalid("connector", "is required").into());
        };
        let mut v = Violations::new();
        let etag = v.etag("connector.etag", &input.etag);
        let reason = v.reason(&req.reason);
        v.finish()?;
        let name = valid_name("connector.name", &input.name)?;
        let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
        let now = self.now();
        let ctx = change_context(self.app.clock(), &request, reason);
        let saved = self
            .app
            .update(name, etag, &ctx, |current| connector_from_input(input, Some(current), &paths, now))
            .await?;
        Ok(Response::new(pb::UpdateConnectorResponse { connector: Some(connector_to_proto(&saved)) }))
    }

    async fn delete_connector(
        &self,
        request: Request<pb::DeleteConnectorRequest>,
    ) -> Result<Response<pb::DeleteConnectorResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let etag = v.etag("etag", &req.etag);
        let reason = v.reason(&req.reason);
        v.finish()?;
        let name = valid_name("connector_name", &req.connector_name)?;
        let ctx = change_context(self.app.clock(), &request, reason);
        self.app.delete(name, etag, &ctx).await?;
        Ok(Response::new(pb::DeleteConnectorResponse {}))
    }

    async fn check_connector_health(
        &self,
        request: Request<pb::CheckConnectorHealthRequest>,
    ) -> Result<Response<pb::CheckConnectorHealthResponse>, Status> {
        let (_, health) = self.app.probe(valid_name("connector_name", &request.get_ref().connector_name)?).await?;
        Ok(Response::new(pb::CheckConnectorHealthResponse { health: Some(health_to_proto(Some(&health))) }))
    }

    async fn get_circuit_breaker(
        &self,
        request: Request<pb::GetCircuitBreakerRequest>,
    ) -> Result<Response<pb::GetCircuitBreakerResponse>, Status> {
        let (def, view) = self.app.breaker(valid_name("connector_name", &request.get_ref().connector_name)?).await?;
        Ok(Response::new(pb::GetCircuitBreakerResponse { breaker: Some(breaker_to_proto(&def.name, &view)) }))
    }

    async fn reset_circuit_breaker(
        &self,
        request: Request<pb::ResetCircuitBreakerRequest>,
    ) -> Result<Response<pb::ResetCircuitBreakerResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let reason = v.reason(&req.reason);
        let etag = v.optional_text("etag", &req.etag, MAX_ETAG_LEN);
        v.finish()?;
        let name = valid_name("connector_name", &req.connector_name)?;
        let ctx = change_context(self.app.clock(), &request, reason);
        let (def, view) = self.app.reset_breaker(name, etag.as_deref(), &ctx).await?;
        Ok(Response::new(pb::ResetCircuitBreakerResponse { breaker: Some(breaker_to_proto(&def.name, &view)) }))
    }

    async fn list_connector_changes(
        &self,
        request: Request<pb::ListConnectorChangesRequest>,
    ) -> Result<Response<pb::ListConnectorChangesResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let limit = v.page_size("page_size", req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        v.finish()?;
        let name = match req.connector_name.as_str() {
            "" => None,
            name => Some(valid_name("connector_name", name)?),
        };
        let scope = Scope::new("connector_changes").with("connector_name", name);
        let page = self.app.changes(name, scope.key(&req.page_token)?, limit).await?;
        Ok(Response::new(pb::ListConnectorChangesResponse {
            changes: page.items.iter().map(change_to_proto).collect(),
            next_page_token: scope.token(page.next_after),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_problem;

    #[test]
    fn endpoints_are_parsed_as_urls() {
        for good in ["http://adapter:8080", "https://intune-adapter.example.com/base/", "http://[::1]:9000"] {
            assert_eq!(endpoint_problem(good), None, "{good}");
        }
        for bad in ["ftp://x", "http://", "http://a b/", "adapter:8080", "http://u:pw@adapter/", "http://a/?x=1", ""] {
            assert!(endpoint_problem(bad).is_some(), "{bad}");
        }
    }
}
