//! Connector definitions: which platform, how it is reached, its breaker
//! and simulator settings, and its last known health. Validation rules for
//! operator input live here too.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::breaker::BreakerConfig;
use super::deployment::ConnectorType;

/// How the control plane reaches the platform.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    /// JSON over HTTP to an execution-plane adapter.
    Http,
    /// Built-in simulator: no external system.
    Simulator,
}

/// What the simulator driver pretends.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SimulatorConfig {
    /// Time each call takes, and the delay before outcomes are reported.
    pub latency: Duration,
    /// Share of devices that fail, 0..=1.
    pub failure_rate: f64,
    /// Devices in each ring.
    pub device_count: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig { latency: Duration::from_millis(50), failure_rate: 0.0, device_count: 100 }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Health {
    pub healthy: bool,
    pub last_error: Option<String>,
    pub checked_at: DateTime<Utc>,
}

/// A registered connector.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConnectorDef {
    /// Unique: lower-case letters, digits and '-'.
    pub name: String,
    pub connector_type: ConnectorType,
    pub driver: Driver,
    /// Base URL of the adapter (HTTP driver).
    pub endpoint: Option<String>,
    /// Bearer token for the adapter. A secret: never returned nor logged.
    pub auth_token: Option<String>,
    pub enabled: bool,
    pub call_timeout: Duration,
    pub breaker: BreakerConfig,
    pub simulator: SimulatorConfig,
    pub health: Option<Health>,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Longest connector name.
pub const MAX_NAME_LEN: usize = 63;
/// Bounds of operator-set durations.
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(300);
pub const MAX_RESET_TIMEOUT: Duration = Duration::from_secs(3600);
pub const MAX_SIMULATOR_LATENCY: Duration = Duration::from_secs(60);

/// What a connector name must look like (a DNS label).
pub const NAME_RULE: &str = "must be 1..=63 lower-case letters, digits or '-', not starting or ending with '-'";

/// Whether `name` can name a connector (see [`NAME_RULE`]).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl ConnectorDef {
    /// What a create request says of the connector: the definition without
    /// what the server sets, and without the token's value (whether one is
    /// set still counts), so that its fingerprint can be stored.
    pub fn requested_content(&self) -> ConnectorDef {
        ConnectorDef {
            auth_token: self.auth_token.as_ref().map(|_| String::new()),
            health: None,
            revision: 0,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            ..self.clone()
        }
    }

    /// Every problem with the definition, as (field, description), with
    /// fields under `connector.`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !is_valid_name(&self.name) {
            problems.push(("connector.name", NAME_RULE.to_owned()));
        }
        // Whether the endpoint is a usable URL is the adapter's to check (it parses it).
        if self.driver == Driver::Http && self.endpoint.is_none() {
            problems.push(("connector.endpoint", "is required for the HTTP driver".into()));
        }
        if self.call_timeout.is_zero() || self.call_timeout > MAX_CALL_TIMEOUT {
            problems.push(("connector.call_timeout", "must be more than 0 and at most 5 minutes".into()));
        }
        if self.breaker.fail_max == 0 || self.breaker.fail_max > 1000 {
            problems.push(("connector.breaker.fail_max", "must be in 1..=1000".into()));
        }
        if self.breaker.reset_timeout.is_zero() || self.breaker.reset_timeout > MAX_RESET_TIMEOUT {
            problems.push(("connector.breaker.reset_timeout", "must be more than 0 and at most 1 hour".into()));
        }
        if !(0.0..=1.0).contains(&self.simulator.failure_rate) {
            problems.push(("connector.simulator.failure_rate", "must be in 0..=1".into()));
        }
        if self.simulator.latency > MAX_SIMULATOR_LATENCY {
            problems.push(("connector.simulator.latency", "must be at most 60 s".into()));
        }
        if self.simulator.device_count > 10_000_000 {
            problems.push(("connector.simulator.device_count", "must be at most 10,000,000".into()));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> ConnectorDef {
        ConnectorDef {
            name: "intune-prod".into(),
            connector_type: ConnectorType::Intune,
            driver: Driver::Http,
            endpoint: Some("http://adapter:8080".into()),
            auth_token: None,
            enabled: true,
            call_timeout: Duration::from_secs(10),
            breaker: BreakerConfig::default(),
            simulator: SimulatorConfig::default(),
            health: None,
            revision: 0,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_sound_definition_has_no_problems() {
        assert!(def().problems().is_empty());
    }

    #[test]
    fn each_bad_field_is_named() {
        let bad = ConnectorDef {
            name: "Intune_Prod".into(),
            endpoint: None,
            call_timeout: Duration::ZERO,
            breaker: BreakerConfig { fail_max: 0, reset_timeout: Duration::ZERO },
            simulator: SimulatorConfig { failure_rate: 2.0, ..SimulatorConfig::default() },
            ..def()
        };
        let fields: Vec<_> = bad.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "connector.name",
                "connector.endpoint",
                "connector.call_timeout",
                "connector.breaker.fail_max",
                "connector.breaker.reset_timeout",
                "connector.simulator.failure_rate"
            ]
        );
        let no_endpoint = ConnectorDef { endpoint: None, ..def() };
        assert_eq!(no_endpoint.problems()[0].0, "connector.endpoint");
        let simulator = ConnectorDef { endpoint: None, driver: Driver::Simulator, ..def() };
        assert!(simulator.problems().is_empty());
    }
}
