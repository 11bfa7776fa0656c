//! The HTTP driver: JSON over HTTP to an execution-plane adapter run by the
//! operator (one per platform). The protocol, also documented in the README:
//!
//! | call | request | success |
//! | --- | --- | --- |
//! | deploy | `POST {endpoint}/v1/deployments` `{deployment_id, app_name, version, ring}` | 2xx, optional `{"object_id": "…"}` |
//! | status | `GET {endpoint}/v1/deployments/{deployment_id}/rings/{ring}` | 2xx `{"success_count": n, "failure_count": n}` |
//! | remove | `DELETE {endpoint}/v1/deployments/{deployment_id}` | 2xx, or 404 (nothing to remove) |
//! | health | `GET {endpoint}/v1/health` | 2xx |
//!
//! Every call carries `Idempotency-Key` (deployment id, ring and operation:
//! the same for every retry of the same work), W3C `traceparent`, and
//! `Authorization: Bearer …` when a token is configured. Timeouts, connection
//! errors, 5xx and 429 are TRANSIENT; other 4xx are PERMANENT.

use crate::domain::Label;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::egress::EgressPolicy;
use super::{CallError, Deployed, Driver, Operation, RingCounts, WorkItem};
use crate::domain::connector::ConnectorDef;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

pub struct HttpDriver {
    client: reqwest::Client,
    /// None when the stored endpoint is not a URL: every call then fails PERMANENT.
    base: Option<Url>,
    egress: EgressPolicy,
    token: Option<String>,
    timeout: std::time::Duration,
}

#[derive(Deserialize)]
struct DeployAnswer {
    object_id: Option<String>,
    device_count: Option<u64>,
}

#[derive(Deserialize)]
struct StatusAnswer {
    success_count: u64,
    failure_count: u64,
}

/// The adapter's base URL, parsed (the registry accepts only URLs that
/// parse); a base path is kept and the protocol's paths go below it.
fn base_url(endpoint: &str) -> Option<Url> {
    Url::parse(endpoint).ok().filter(|url| !url.cannot_be_a_base())
}

impl HttpDriver {
    /// `segments` below the base URL, each escaped as a path segment.
    fn url(&self, segments: &[&str]) -> Result<Url, CallError> {
        let mut url =
            self.base.clone().ok_or_else(|| CallError::Permanent("the connector's endpoint is not a URL".into()))?;
        // A name is checked again when it resolves; an address only here.
        if let Some(why) = self.egress.refuse_url(&url) {
            return Err(CallError::Permanent(format!("refused to call the connector's endpoint: {why}")));
        }
        url.path_segments_mut().expect("a base URL").pop_if_empty().extend(segments);
        Ok(url)
    }

    pub fn new(client: reqwest::Client, egress: EgressPolicy, def: &ConnectorDef) -> HttpDriver {
        HttpDriver {
            client,
            egress,
            base: base_url(def.endpoint.as_deref().unwrap_or_default()),
            token: def.auth_token.clone(),
            timeout: def.call_timeout,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        idempotency_key: Option<String>,
    ) -> Result<reqwest::Response, CallError> {
        let mut headers = HeaderMap::new();
        eucora_otel::tracing_setup::inject_trace_context(&mut headers);
        if let Some(key) = idempotency_key.and_then(|key| http::HeaderValue::try_from(key).ok()) {
            headers.insert(IDEMPOTENCY_KEY_HEADER, key);
        }
        let mut request = request.headers(headers).timeout(self.timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|err| {
            // Never echo the URL's query or the token: describe the failure kind only.
            let kind = if err.is_timeout() {
                "timed out"
            } else if err.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            CallError::Transient(format!("{kind}: {}", err.without_url()))
        })?;
        classify(response).await
    }
}

/// 2xx passes; 5xx and 429 are TRANSIENT; other statuses PERMANENT.
async fn classify(response: reqwest::Response) -> Result<reqwest::Response, CallError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: String = response.text().await.unwrap_or_default().chars().take(200).collect();
    let message = format!("adapter answered {status}: {body}");
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(CallError::Transient(message))
    } else {
        Err(CallError::Permanent(message))
    }
}

fn bad_answer(err: reqwest::Error) -> CallError {
    CallError::Permanent(format!("adapter sent an unreadable answer: {}", err.without_url()))
}

#[async_trait::async_trait]
impl Driver for HttpDriver {
    async fn deploy(&self, work: &WorkItem) -> Result<Deployed, CallError> {
        let body = json!({
            "deployment_id": work.deployment_id,
            "app_name": work.app_name,
            "version": work.version,
            "ring": work.ring.as_label(),
        });
        let request = self.client.post(self.url(&["v1", "deployments"])?).json(&body);
        let response = self.send(request, Some(work.idempotency_key(Operation::Deploy))).await?;
        let bytes = response.bytes().await.map_err(bad_answer)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Deployed::default());
        }
        let answer: DeployAnswer = serde_json::from_slice(&bytes)
            .map_err(|err| CallError::Permanent(format!("adapter sent an unreadable deploy answer: {err}")))?;
        Ok(Deployed { object_id: answer.object_id, device_count: answer.device_count })
    }

    async fn status(&self, work: &WorkItem) -> Result<RingCounts, CallError> {
        let id = work.deployment_id.to_string();
        let url = self.url(&["v1", "deployments", &id, "rings", work.ring.as_label()])?;
        let response = self.send(self.client.get(url), None).await?;
        let answer: StatusAnswer = response.json().await.map_err(bad_answer)?;
        Ok(RingCounts { success_count: answer.success_count, failure_count: answer.failure_count })
    }

    async fn remove(&self, work: &WorkItem) -> Result<(), CallError> {
        let url = self.url(&["v1", "deployments", &work.deployment_id.to_string()])?;
        match self.send(self.client.delete(url), Some(work.idempotency_key(Operation::Remove))).await {
            Err(CallError::Permanent(message)) if message.starts_with("adapter answered 404") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn health(&self) -> Result<(), CallError> {
        self.send(self.client.get(self.url(&["v1", "health"])?), None).await.map(|_| ())
    }
}
