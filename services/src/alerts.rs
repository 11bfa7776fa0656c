//! Stop the line from alerts: Alertmanager's webhook (`POST
//! /api/v1/alertmanager` on the HTTP listener, bearer token required) pauses
//! the deploying deployments a firing alert is about, at once, each pause an
//! audit event naming the alert. Rules (matchers on the alert's labels) say
//! which alerts stop the line and how far: by default every critical alert,
//! narrowed by the `app_name`, `ring` and `connector_type` labels it
//! carries (none: every deployment). A resolved alert resumes only what it
//! paused, and only when its rule says `resume_on_resolve`; otherwise
//! ResumeDeployment, with an identity, does.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use eucora_otel::Catalog;
use serde::Deserialize;

use crate::app::{AppError, Deployments};
use crate::clock::Clock;
use crate::domain::{ConnectorType, DeploymentStatus, EventKind, Label, Ring};
use crate::store::{DeploymentFilter, Store};

/// The actor of every pause and resume the webhook makes.
pub const ACTOR: &str = "alertmanager";
/// Where Alertmanager posts.
pub const PATH: &str = "/api/v1/alertmanager";
/// The shipped alert rules: their alert names are the values of the pauses
/// metric's `alertname` label; any other alert counts as `other`.
const SHIPPED_RULES: [&str; 2] = [
    include_str!("../../deploy/prometheus/rules/eucora-alerts.yml"),
    include_str!("../../deploy/prometheus/rules/eucora-slo.yml"),
];
const OTHER_ALERT: &str = "other";
/// Deployments paused per page of the scope.
const PAGE: u64 = 200;
/// Events read to find who paused a deployment (its last pause is among them).
const MAX_EVENTS_READ: u64 = 10_000;

/// How far one kind of alert stops the line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Narrowed by the alert's `app_name`, `ring` and `connector_type` labels (none: every deployment).
    #[default]
    Labels,
    /// Every deploying deployment, whatever the alert's labels.
    All,
}

/// Which alerts stop the line, and how.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Labels the alert must carry with exactly these values.
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, String>,
    #[serde(default)]
    pub scope: Scope,
    /// When the alert resolves, resume what it paused (off: people resume).
    #[serde(default)]
    pub resume_on_resolve: bool,
}

impl Rule {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|(name, value)| labels.get(name) == Some(value))
    }
}

/// The rules of a `--stop-the-line-rules` file (`[[rule]]` tables, first match wins).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(rename = "rule", default)]
    rules: Vec<Rule>,
}

/// The rules when no file says otherwise: every critical alert, scoped by its labels.
pub fn default_rules() -> Vec<Rule> {
    let matchers = BTreeMap::from([("severity".to_owned(), "critical".to_owned())]);
    vec![Rule { matchers, scope: Scope::Labels, resume_on_resolve: false }]
}

/// # Errors
/// The text is not a rules file.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, toml::de::Error> {
    Ok(toml::from_str::<RulesFile>(text)?.rules)
}

/// The webhook's settings.
#[derive(Debug, Clone)]
pub struct StopTheLineOptions {
    /// The bearer token Alertmanager sends (its `http_config.authorization`).
    pub token: String,
    pub rules: Vec<Rule>,
}

/// Alertmanager's webhook payload (version 4), the fields used.
#[derive(Debug, Deserialize)]
struct Payload {
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
struct Alert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    fingerprint: String,
}

impl Alert {
    fn name(&self) -> &str {
        self.labels.get("alertname").map_or("unnamed alert", String::as_str)
    }

    /// The deploying deployments it is about under `scope`.
    fn filter(&self, scope: Scope) -> DeploymentFilter {
        let mut filter = DeploymentFilter { status: Some(DeploymentStatus::Deploying), ..DeploymentFilter::default() };
        if scope == Scope::Labels {
            filter.app_name = self.labels.get("app_name").cloned();
            filter.ring = self.labels.get("ring").and_then(|ring| Ring::from_label(ring));
            filter.connector_type = self.labels.get("connector_type").and_then(|c| ConnectorType::from_label(c));
        }
        filter
    }

    /// The alert's fingerprint: the correlation id of what it pauses, so that
    /// its resolution finds its own pauses.
    fn correlation_id(&self) -> Option<String> {
        (!self.fingerprint.is_empty()).then(|| self.fingerprint.clone())
    }

    /// What the pause events say: the alert, and its summary when it has one.
    fn reason(&self) -> String {
        match self.annotations.get("summary") {
            Some(summary) => format!("stop the line: alert {} is firing: {summary}", self.name()),
            None => format!("stop the line: alert {} is firing", self.name()),
        }
    }
}

/// What one delivery did.
#[derive(Debug, Default, serde::Serialize)]
struct Outcome {
    paused: u64,
    resumed: u64,
}

/// The webhook: its settings and what it acts through.
pub struct StopTheLine {
    options: StopTheLineOptions,
    /// Finds the deployments in scope (as stored: no gate or next action needed).
    store: Arc<Store>,
    /// Pauses and resumes them.
    deployments: Deployments,
    catalog: Catalog,
    clock: Clock,
    known_alerts: Vec<&'static str>,
}

/// The alert names of the shipped rule files.
fn shipped_alert_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = SHIPPED_RULES
        .iter()
        .flat_map(|rules| rules.lines())
        .filter_map(|line| line.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

impl StopTheLine {
    pub fn new(
        options: StopTheLineOptions,
        store: Arc<Store>,
        deployments: Deployments,
        catalog: Catalog,
        clock: Clock,
    ) -> StopTheLine {
        StopTheLine { options, store, deployments, catalog, clock, known_alerts: shipped_alert_names() }
    }

    /// The route, to merge into the HTTP listener's router.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route(PATH, post(receive)).with_state(self)
    }

    /// The bounded `alertname` label of the pauses metric.
    fn alert_label(&self, name: &str) -> &'static str {
        self.known_alerts.iter().copied().find(|known| *known == name).unwrap_or(OTHER_ALERT)
    }

    async fn handle(&self, payload: Payload) -> Result<Outcome, AppError> {
        let mut outcome = Outcome::default();
        for alert in &payload.alerts {
            let Some(rule) = self.options.rules.iter().find(|rule| rule.matches(&alert.labels)) else { continue };
            match alert.status.as_str() {
                "firing" => outcome.paused += self.pause(alert, rule.scope).await?,
                "resolved" if rule.resume_on_resolve => outcome.resumed += self.resume(alert, rule.scope).await?,
                _ => {}
            }
        }
        Ok(outcome)
    }

    /// Pauses every deploying deployment in the alert's scope not paused yet.
    async fn pause(&self, alert: &Alert, scope: Scope) -> Result<u64, AppError> {
        let ctx = self.clock.context(ACTOR.to_owned(), alert.reason(), alert.correlation_id());
        let mut paused = 0;
        for deployment in self.in_scope(alert, scope, false).await? {
            match self.deployments.mutate(deployment, None, &ctx, |d, ctx| d.pause(ctx)).await {
                Ok(_) => paused += 1,
                // Paused meanwhile, or no longer deploying: nothing to stop.
                Err(AppError::FailedPrecondition(_)) => {}
                Err(err) => return Err(err),
            }
        }
        if paused > 0 {
            self.catalog.stop_the_line_paused(self.alert_label(alert.name()), paused);
            tracing::warn!(alert = alert.name(), paused, "stop the line: deployments paused by a firing alert");
        }
        Ok(paused)
    }

    /// Resumes the paused deployments in scope whose pause was this alert's.
    async fn resume(&self, alert: &Alert, scope: Scope) -> Result<u64, AppError> {
        let reason = format!("stop the line: alert {} resolved", alert.name());
        let ctx = self.clock.context(ACTOR.to_owned(), reason, alert.correlation_id());
        let mut resumed = 0;
        for deployment in self.in_scope(alert, scope, true).await? {
            let events = self.deployments.events(deployment, None, MAX_EVENTS_READ).await?.items;
            let paused_by_it = events.iter().rev().find(|e| e.event.kind == EventKind::Paused).is_some_and(|e| {
                e.event.actor == ACTOR && e.event.correlation_id == alert.fingerprint && !alert.fingerprint.is_empty()
            });
            if paused_by_it && self.deployments.mutate(deployment, None, &ctx, |d, ctx| d.resume(ctx)).await.is_ok() {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// The ids of deploying deployments in the alert's scope that are (or are not) paused.
    async fn in_scope(&self, alert: &Alert, scope: Scope, paused: bool) -> Result<Vec<uuid::Uuid>, AppError> {
        let filter = alert.filter(scope);
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_deployments(&filter, after, PAGE).await?;
            ids.extend(page.items.iter().filter(|d| d.paused == paused).map(|d| d.id));
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(ids),
            }
        }
    }
}

async fn receive(State(webhook): State<Arc<StopTheLine>>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = headers.get(header::AUTHORIZATION).and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    if !presented.is_some_and(|token| eucora_otel::http::same_token(token, webhook.options.token.as_bytes())) {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a bearer token is required\n")
            .into_response();
    }
    let payload: Payload = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(err) => {
            return (StatusCode::BAD_REQUEST, format!("not an Alertmanager webhook payload: {err}\n")).into_response();
        }
    };
    match webhook.handle(payload).await {
        Ok(outcome) => {
            ([(header::CONTENT_TYPE, "application/json")], serde_json::to_string(&outcome).expect("serializes"))
                .into_response()
        }
        // Alertmanager retries a failed delivery: what was paused stays paused, the rest follows.
        Err(err) => {
            tracing::warn!(error = %err, "stop the line: a webhook delivery could not be applied");
            (StatusCode::SERVICE_UNAVAILABLE, format!("{err}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_files_parse_and_first_match_wins() {
        let rules = parse_rules(
            r#"
            [[rule]]
            match = { alertname = "EucoraChangeFailureRatioHigh" }
            scope = "all"
            resume_on_resolve = true

            [[rule]]
            match = { severity = "critical" }
            "#,
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!((rules[0].scope, rules[0].resume_on_resolve), (Scope::All, true));
        assert_eq!(rules[1].scope, Scope::Labels);
        let labels = BTreeMap::from([("severity".to_owned(), "critical".to_owned())]);
        assert!(!rules[0].matches(&labels) && rules[1].matches(&labels));
        assert!(parse_rules("[[rule]]\nscpoe = \"all\"").is_err(), "a typo is refused, not ignored");
    }

    #[test]
    fn the_shipped_alerts_name_the_metric_label() {
        let names = shipped_alert_names();
        assert!(names.contains(&"EucoraTargetDown") && names.contains(&"EucoraErrorBudgetBurn"), "{names:?}");
        assert!(names.len() >= 15);
    }
}
