//! The instrument catalog: every metric EUCORA exports, with its name, unit,
//! description, label keys, allowed label values and histogram buckets, in
//! this one file. Services record only through the typed methods of
//! [`Catalog`], so a misspelt name or an unbounded label cannot reach
//! Prometheus.
//!
//! # Naming
//! Instruments carry OpenTelemetry base names and units; the Prometheus
//! exporter derives the public names of DESIGN §4 from them: a unit of `s`
//! appends `_seconds`, monotonic counters get `_total`, dots become
//! underscores. So `deployment` (counter) scrapes as `deployment_total` and
//! `deployment_duration` (unit `s`) as `deployment_duration_seconds`. The
//! golden scrape test pins every resulting name.
//!
//! # Labels
//! Label values are lower snake case (`awaiting_cab`, `rolled_back`,
//! `air_gapped`), booleans are `true`/`false`. Values of the domain's
//! vocabulary (rings, statuses, connector types, gate checks, controller
//! decisions) arrive as [`Label`]s — `&'static str`, so bounded by what the
//! binary contains; values only telemetry knows (check verdicts, error
//! types, pool states) are enums here. Open-ended are `app_name`, which the
//! dashboards group by — instruments carrying it get a cardinality limit of
//! [`APP_SERIES_LIMIT`] instead of the SDK's default 2,000 (reached at about
//! 25 apps), so an estate with thousands of apps does not fold into
//! `otel_metric_overflow` — and the connector name of breaker series, bounded
//! by the registry.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};

/// Series kept per instrument that carries `app_name`: 8 statuses × 5 rings ×
/// 2 CAB values × 1,250 apps, or a few thousand apps at realistic spreads.
pub const APP_SERIES_LIMIT: usize = 100_000;

/// Instrument names, as the meter sees them (see the module docs for the
/// exported Prometheus names).
pub mod names {
    pub const DEPLOYMENT: &str = "deployment";
    pub const DEPLOYMENT_DURATION: &str = "deployment_duration";
    pub const DEPLOYMENT_TIME_TO_COMPLIANCE: &str = "deployment_time_to_compliance";
    pub const RISK_SCORE_DISTRIBUTION: &str = "risk_score_distribution";
    pub const RING_PROMOTION: &str = "ring_promotion";
    pub const PROMOTION_GATE_SUCCESS_RATE: &str = "promotion_gate_success_rate";
    pub const CIRCUIT_BREAKER_STATE: &str = "circuit_breaker_state";
    pub const CIRCUIT_BREAKER_FAILURES: &str = "circuit_breaker_failures";
    pub const CONNECTOR_HEALTH: &str = "connector_health";
    pub const CONNECTOR_OPERATION_DURATION: &str = "connector_operation_duration";
    pub const DB_CONNECTION_POOL_SIZE: &str = "db_connection_pool_size";
    pub const CONTROLLER_EVALUATIONS: &str = "controller_evaluations";
    pub const CONTROLLER_ACTIONS: &str = "controller_actions";
    pub const DEPLOYMENTS_STALLED: &str = "deployments_stalled";
    pub const DEPLOYMENTS_WAITING_FOR_WINDOW: &str = "deployments_waiting_for_window";
    pub const CHANGE_FREEZE_ACTIVE: &str = "change_freeze_active";
    pub const STOP_THE_LINE_PAUSES: &str = "stop_the_line_pauses";
    pub const RING_DURATION: &str = "ring_duration";
    pub const DEPLOYMENTS_CURRENT: &str = "deployments_current";
    pub const PROMOTION_GATE_THRESHOLD: &str = "promotion_gate_threshold";
    pub const PROMOTION_GATE_CHECKS: &str = "promotion_gate_checks";
    pub const AUTH_FAILURES: &str = "auth_failures";
    pub const AUTH_DENIED: &str = "auth_denied";
    pub const LIMITS_EXCEEDED: &str = "limits_exceeded";
    pub const COORDINATION_LEASE_HELD: &str = "coordination_lease_held";
    pub const COORDINATION_REDIS_UP: &str = "coordination_redis_up";
    /// OpenTelemetry RPC semantic conventions.
    pub const RPC_SERVER_CALL_DURATION: &str = "rpc.server.call.duration";
    pub const RPC_SERVER_CALLS: &str = "rpc.server.calls";

    /// Instruments whose label sets include `app_name`.
    pub const WITH_APP_NAME: &[&str] = &[DEPLOYMENT, DEPLOYMENT_DURATION, DEPLOYMENT_TIME_TO_COMPLIANCE];
}

/// Histogram bucket boundaries (DESIGN §4).
pub mod buckets {
    pub const DEPLOYMENT_DURATION_SECONDS: &[f64] = &[1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0];
    pub const RISK_SCORE: &[f64] = &[10.0, 25.0, 50.0, 75.0, 90.0, 100.0];
    pub const CONNECTOR_OPERATION_SECONDS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];
    /// Time a deployment spends in a ring: a minute to a week.
    pub const RING_SECONDS: &[f64] = &[60.0, 600.0, 3600.0, 14400.0, 43200.0, 86400.0, 172800.0, 259200.0, 604800.0];
    /// OpenTelemetry's recommended boundaries for `rpc.server.call.duration`.
    pub const RPC_SECONDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
}

/// A label value from the recording side's own vocabulary (a ring, a
/// status, a connector type: the domain's lower snake case labels). Being
/// `&'static`, it is compiled into the binary, so the set of values a label
/// can take is finite without this crate mirroring the domain's enums.
pub type Label = &'static str;

/// Declares a label enum, of this catalog's own vocabulary, with its lower snake case values.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value as exported.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $value),+ }
            }
        }
    };
}

label_enum!(
    /// Verdict of one gate check.
    CheckResultLabel { Pass => "pass", Fail => "fail" }
);
label_enum!(
    /// `error_type` of `circuit_breaker_failures_total`.
    ErrorTypeLabel { Transient => "transient", Permanent => "permanent" }
);
label_enum!(
    /// `status` of `connector_operation_duration_seconds`.
    OperationStatusLabel { Success => "success", Failure => "failure" }
);
label_enum!(
    /// `status` of `controller_actions_total`.
    ActionStatusLabel { Done => "done", Failed => "failed", Fenced => "fenced" }
);
label_enum!(
    /// `state` of `db_connection_pool_size`.
    PoolStateLabel { Idle => "idle", InUse => "in_use", Max => "max" }
);

fn bool_label(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

/// Every instrument of DESIGN §4, built once from a [`Meter`].
#[derive(Debug, Clone)]
pub struct Catalog {
    deployment: Counter<u64>,
    deployment_duration: Histogram<f64>,
    time_to_compliance: Gauge<f64>,
    risk_score: Histogram<u64>,
    ring_promotion: Counter<u64>,
    gate_success_rate: Gauge<f64>,
    breaker_state: Gauge<i64>,
    breaker_failures: Counter<u64>,
    connector_health: Gauge<i64>,
    connector_operation: Histogram<f64>,
    pool_size: Gauge<i64>,
    rpc_duration: Histogram<f64>,
    rpc_calls: Counter<u64>,
    controller_evaluations: Counter<u64>,
    controller_actions: Counter<u64>,
    deployments_stalled: Gauge<i64>,
    deployments_waiting_for_window: Gauge<i64>,
    change_freeze_active: Gauge<i64>,
    stop_the_line_pauses: Counter<u64>,
    lease_held: Gauge<i64>,
    redis_up: Gauge<i64>,
    ring_duration: Histogram<f64>,
    deployments_current: Gauge<i64>,
    gate_threshold: Gauge<f64>,
    gate_checks: Counter<u64>,
    auth_failures: Counter<u64>,
    auth_denied: Counter<u64>,
    limits_exceeded: Counter<u64>,
}

// === impl Catalog ===

impl Catalog {
    pub fn new(meter: &Meter) -> Catalog {
        Catalog {
            deployment: meter
                .u64_counter(names::DEPLOYMENT)
                .with_description("Deployments entering a lifecycle status")
                .build(),
            deployment_duration: meter
                .f64_histogram(names::DEPLOYMENT_DURATION)
                .with_unit("s")
                .with_description("Time from DEPLOYING to a terminal status")
                .with_boundaries(buckets::DEPLOYMENT_DURATION_SECONDS.to_vec())
                .build(),
            time_to_compliance: meter
                .f64_gauge(names::DEPLOYMENT_TIME_TO_COMPLIANCE)
                .with_unit("s")
                .with_description("Time a ring took from start to compliance, for the latest deployment of an app")
                .build(),
            risk_score: meter
                .u64_histogram(names::RISK_SCORE_DISTRIBUTION)
                .with_description("Risk scores of created deployments")
                .with_boundaries(buckets::RISK_SCORE.to_vec())
                .build(),
            ring_promotion: meter
                .u64_counter(names::RING_PROMOTION)
                .with_description("Ring promotion attempts by result")
                .build(),
            gate_success_rate: meter
                .f64_gauge(names::PROMOTION_GATE_SUCCESS_RATE)
                .with_description("Success rate seen by the latest promotion gate evaluation of a ring (0..1)")
                .build(),
            breaker_state: meter
                .i64_gauge(names::CIRCUIT_BREAKER_STATE)
                .with_description("Circuit breaker state: 0 closed, 1 open, 2 half open")
                .build(),
            breaker_failures: meter
                .u64_counter(names::CIRCUIT_BREAKER_FAILURES)
                .with_description("Connector call failures counted by circuit breakers")
                .build(),
            connector_health: meter
                .i64_gauge(names::CONNECTOR_HEALTH)
                .with_description("Connector health: 1 healthy, 0 unhealthy")
                .build(),
            connector_operation: meter
                .f64_histogram(names::CONNECTOR_OPERATION_DURATION)
                .with_unit("s")
                .with_description("Duration of calls to execution-plane connectors")
                .with_boundaries(buckets::CONNECTOR_OPERATION_SECONDS.to_vec())
                .build(),
            pool_size: meter
                .i64_gauge(names::DB_CONNECTION_POOL_SIZE)
                .with_unit("{connection}")
                .with_description("Database connections by state")
                .build(),
            rpc_duration: meter
                .f64_histogram(names::RPC_SERVER_CALL_DURATION)
                .with_unit("s")
                .with_description("Duration of gRPC server calls, streams until they end")
                .with_boundaries(buckets::RPC_SECONDS.to_vec())
                .build(),
            rpc_calls: meter
                .u64_counter(names::RPC_SERVER_CALLS)
                .with_description("gRPC server calls by outcome")
                .build(),
            controller_evaluations: meter
                .u64_counter(names::CONTROLLER_EVALUATIONS)
                .with_description("Deployments the rollout controller evaluated, by decision")
                .build(),
            controller_actions: meter
                .u64_counter(names::CONTROLLER_ACTIONS)
                .with_description("Automatic promotions, rollbacks and stall flags, by outcome")
                .build(),
            deployments_stalled: meter
                .i64_gauge(names::DEPLOYMENTS_STALLED)
                .with_description("Deploying deployments flagged stalled (no new outcomes)")
                .build(),
            deployments_waiting_for_window: meter
                .i64_gauge(names::DEPLOYMENTS_WAITING_FOR_WINDOW)
                .with_description(
                    "Deploying deployments whose gate only the change calendar holds, by hold \
                     (freeze, deny_window, outside_allow_window)",
                )
                .build(),
            change_freeze_active: meter
                .i64_gauge(names::CHANGE_FREEZE_ACTIVE)
                .with_description("Whether the global change freeze holds (1) or not (0)")
                .build(),
            stop_the_line_pauses: meter
                .u64_counter(names::STOP_THE_LINE_PAUSES)
                .with_description("Deployments paused by a firing alert (Alertmanager's webhook), by alert name")
                .build(),
            lease_held: meter
                .i64_gauge(names::COORDINATION_LEASE_HELD)
                .with_description("Whether this replica holds a background duty's lease (1) or not (0)")
                .build(),
            redis_up: meter
                .i64_gauge(names::COORDINATION_REDIS_UP)
                .with_description(
                    "Whether this replica reaches its coordination Redis (1) or runs degraded to local coordination (0)",
                )
                .build(),
            ring_duration: meter
                .f64_histogram(names::RING_DURATION)
                .with_unit("s")
                .with_description("Time a deployment spent in a ring, observed when it leaves it")
                .with_boundaries(buckets::RING_SECONDS.to_vec())
                .build(),
            deployments_current: meter
                .i64_gauge(names::DEPLOYMENTS_CURRENT)
                .with_description("Deployments now in each status and current ring, as stored")
                .build(),
            gate_threshold: meter
                .f64_gauge(names::PROMOTION_GATE_THRESHOLD)
                .with_description("Success rate each ring's promotion gate requires now (0..1), from its policy")
                .build(),
            gate_checks: meter
                .u64_counter(names::PROMOTION_GATE_CHECKS)
                .with_description("Promotion gate checks evaluated, by ring, kind and verdict")
                .build(),
            auth_failures: meter
                .u64_counter(names::AUTH_FAILURES)
                .with_description("Calls refused UNAUTHENTICATED, by reason (no identity is ever a label)")
                .build(),
            auth_denied: meter
                .u64_counter(names::AUTH_DENIED)
                .with_description("Calls refused PERMISSION_DENIED, by the role they needed")
                .build(),
            limits_exceeded: meter
                .u64_counter(names::LIMITS_EXCEEDED)
                .with_description(
                    "Calls refused or cut by a limit: rate, in_flight, watch_streams, message_size, deadline",
                )
                .build(),
        }
    }

    /// How many deployments are now in `status` with `ring` as their current ring.
    pub fn deployments_current(&self, status: Label, ring: Label, count: u64) {
        self.deployments_current.record(
            i64::try_from(count).unwrap_or(i64::MAX),
            &[KeyValue::new("status", status), KeyValue::new("ring", ring)],
        );
    }

    /// The success rate `ring`'s gate requires now.
    pub fn gate_threshold(&self, ring: Label, min_success_rate: f64) {
        self.gate_threshold.record(min_success_rate, &[KeyValue::new("ring", ring)]);
    }

    /// One gate check of `ring` was evaluated.
    pub fn gate_check(&self, ring: Label, check: Label, result: CheckResultLabel) {
        self.gate_checks.add(
            1,
            &[KeyValue::new("ring", ring), KeyValue::new("check", check), KeyValue::new("result", result.as_str())],
        );
    }

    /// A deployment entered `status`.
    pub fn deployment_entered(&self, status: Label, ring: Label, app_name: &str, requires_cab: bool) {
        self.deployment.add(
            1,
            &[
                KeyValue::new("status", status),
                KeyValue::new("ring", ring),
                KeyValue::new("app_name", app_name.to_owned()),
                KeyValue::new("requires_cab", bool_label(requires_cab)),
            ],
        );
    }

    /// A deployment reached terminal `status` `seconds` after it started deploying.
    pub fn deployment_finished(&self, status: Label, ring: Label, app_name: &str, seconds: f64) {
        self.deployment_duration.record(
            seconds,
            &[
                KeyValue::new("ring", ring),
                KeyValue::new("app_name", app_name.to_owned()),
                KeyValue::new("status", status),
            ],
        );
    }

    /// A ring of an app's deployment became compliant `seconds` after it started.
    pub fn compliance_reached(&self, ring: Label, app_name: &str, seconds: f64) {
        self.time_to_compliance
            .record(seconds, &[KeyValue::new("ring", ring), KeyValue::new("app_name", app_name.to_owned())]);
    }

    /// A deployment was created with `risk_score`.
    pub fn risk_scored(&self, risk_score: u8, requires_cab: bool) {
        self.risk_score.record(u64::from(risk_score), &[KeyValue::new("requires_cab", bool_label(requires_cab))]);
    }

    pub fn ring_promotion(&self, from: Label, to: Label, result: Label) {
        self.ring_promotion
            .add(1, &[KeyValue::new("from_ring", from), KeyValue::new("to_ring", to), KeyValue::new("status", result)]);
    }

    pub fn gate_evaluated(&self, ring: Label, success_rate: f64) {
        self.gate_success_rate.record(success_rate, &[KeyValue::new("ring", ring)]);
    }

    /// The state of `service`'s breaker as DESIGN §4 numbers it: 0 closed, 1 open, 2 half open.
    pub fn breaker_state(&self, service: &str, connector_type: Label, state: i64) {
        self.breaker_state.record(
            state,
            &[KeyValue::new("service", service.to_owned()), KeyValue::new("connector_type", connector_type)],
        );
    }

    pub fn breaker_failure(&self, service: &str, connector_type: Label, error_type: ErrorTypeLabel) {
        self.breaker_failures.add(
            1,
            &[
                KeyValue::new("service", service.to_owned()),
                KeyValue::new("connector_type", connector_type),
                KeyValue::new("error_type", error_type.as_str()),
            ],
        );
    }

    pub fn connector_health(&self, connector_type: Label, healthy: bool) {
        self.connector_health.record(i64::from(healthy), &[KeyValue::new("connector_type", connector_type)]);
    }

    pub fn connector_operation(
        &self,
        connector_type: Label,
        operation: Label,
        status: OperationStatusLabel,
        seconds: f64,
    ) {
        self.connector_operation.record(
            seconds,
            &[
                KeyValue::new("connector_type", connector_type),
                KeyValue::new("operation", operation),
                KeyValue::new("status", status.as_str()),
            ],
        );
    }

    /// The database pool's current sizes.
    pub fn pool_size(&self, idle: u32, in_use: u32, max: u32) {
        for (state, value) in
            [(PoolStateLabel::Idle, idle), (PoolStateLabel::InUse, in_use), (PoolStateLabel::Max, max)]
        {
            self.pool_size.record(i64::from(value), &[KeyValue::new("state", state.as_str())]);
        }
    }

    /// The controller evaluated a deployment and decided `decision`.
    pub fn controller_evaluated(&self, decision: Label) {
        self.controller_evaluations.add(1, &[KeyValue::new("result", decision)]);
    }

    /// The controller acted on its own.
    pub fn controller_acted(&self, action: Label, status: ActionStatusLabel) {
        self.controller_actions.add(1, &[KeyValue::new("action", action), KeyValue::new("status", status.as_str())]);
    }

    /// Deploying deployments currently flagged stalled.
    pub fn deployments_stalled(&self, count: u64) {
        self.deployments_stalled.record(i64::try_from(count).unwrap_or(i64::MAX), &[]);
    }

    /// Deploying deployments the change calendar holds, by `hold`.
    pub fn deployments_waiting_for_window(&self, hold: Label, count: u64) {
        self.deployments_waiting_for_window
            .record(i64::try_from(count).unwrap_or(i64::MAX), &[KeyValue::new("hold", hold)]);
    }

    /// A firing alert named `alert` (a shipped alert's name, or `other`) paused `count` deployments.
    pub fn stop_the_line_paused(&self, alert: Label, count: u64) {
        self.stop_the_line_pauses.add(count, &[KeyValue::new("alertname", alert)]);
    }

    /// Whether the global change freeze holds.
    pub fn change_freeze_active(&self, active: bool) {
        self.change_freeze_active.record(i64::from(active), &[]);
    }

    /// Whether this replica holds the lease of background duty `lease`.
    pub fn lease_held(&self, lease: Label, held: bool) {
        self.lease_held.record(i64::from(held), &[KeyValue::new("lease", lease)]);
    }

    /// Whether this replica reaches its coordination Redis.
    pub fn redis_up(&self, up: bool) {
        self.redis_up.record(i64::from(up), &[]);
    }

    /// A deployment left `ring` after `seconds` in it.
    pub fn ring_left(&self, ring: Label, seconds: f64) {
        self.ring_duration.record(seconds, &[KeyValue::new("ring", ring)]);
    }

    /// A call without usable credentials: `reason` is `missing`, `malformed` or `invalid`.
    pub fn auth_failed(&self, reason: Label) {
        self.auth_failures.add(1, &[KeyValue::new("reason", reason)]);
    }

    /// An authenticated call refused for want of `role`.
    pub fn auth_denied(&self, role: Label) {
        self.auth_denied.add(1, &[KeyValue::new("role", role)]);
    }

    /// A call refused or cut by `limit` (`rate`, `in_flight`, `watch_streams`, `message_size`, `deadline`).
    pub fn limit_exceeded(&self, limit: Label) {
        self.limits_exceeded.add(1, &[KeyValue::new("limit", limit)]);
    }

    /// One finished gRPC call (OpenTelemetry RPC semantic conventions).
    pub fn rpc_call(&self, service: &str, method: &str, grpc_status_code: i32, seconds: f64) {
        let attributes = [
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service.to_owned()),
            KeyValue::new("rpc.method", method.to_owned()),
            KeyValue::new("rpc.grpc.status_code", i64::from(grpc_status_code)),
        ];
        self.rpc_duration.record(seconds, &attributes);
        self.rpc_calls.add(1, &attributes);
    }
}
