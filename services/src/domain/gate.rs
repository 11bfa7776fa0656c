//! Ring policies and promotion-gate evaluation (DESIGN §2): the checks that
//! must pass to leave a ring, each reported with what was observed, what was
//! required and a sentence an operator can act on. Evaluation is a pure
//! function of the deployment, the ring's policy and the time.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::deployment::{Deployment, SiteClass};
use super::lifecycle::DeploymentStatus;
use super::ring::Ring;

/// The gate policy to leave one ring.
#[derive(Debug, Clone, PartialEq)]
pub struct RingPolicy {
    pub ring: Ring,
    /// Minimum success rate, 0..=1.
    pub min_success_rate: f64,
    /// Minimum devices reported before the success rate counts.
    pub min_sample_size: u64,
    pub online_compliance_limit: Duration,
    pub intermittent_compliance_limit: Duration,
    pub air_gapped_compliance_limit: Duration,
    /// High-risk deployments need a CAB approval to leave this ring.
    pub require_cab_approval: bool,
    pub require_evidence_pack: bool,
    /// The rollback must have been exercised in this ring before leaving it.
    pub require_rollback_validated: bool,
    /// Optimistic-concurrency revision (the API's etag).
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
}

const HOUR: u64 = 3600;
/// Longest compliance limit accepted: a quarter.
pub const MAX_COMPLIANCE_LIMIT: Duration = Duration::from_secs(90 * 24 * HOUR);
/// Largest minimum sample accepted.
pub const MAX_SAMPLE_SIZE: u64 = 10_000_000;

impl RingPolicy {
    /// DESIGN §2 defaults: success rate CANARY 0.98, PILOT 0.97, DEPARTMENT and
    /// GLOBAL 0.99 (LAB, which DESIGN leaves open, uses CANARY's); compliance
    /// within 24 h online, 72 h intermittent, 7 d air-gapped; CAB approval for
    /// high risk before publishing beyond CANARY; an evidence pack everywhere;
    /// a validated rollback before leaving LAB. Minimum samples grow with the
    /// ring so that 1/1 never passes as 100 %.
    pub fn default_for(ring: Ring, now: DateTime<Utc>) -> RingPolicy {
        let (min_success_rate, min_sample_size) = match ring {
            Ring::Lab => (0.98, 10),
            Ring::Canary => (0.98, 25),
            Ring::Pilot => (0.97, 50),
            Ring::Department => (0.99, 100),
            Ring::Global => (0.99, 100),
        };
        RingPolicy {
            ring,
            min_success_rate,
            min_sample_size,
            online_compliance_limit: Duration::from_secs(24 * HOUR),
            intermittent_compliance_limit: Duration::from_secs(72 * HOUR),
            air_gapped_compliance_limit: Duration::from_secs(7 * 24 * HOUR),
            require_cab_approval: ring >= Ring::Canary,
            require_evidence_pack: true,
            require_rollback_validated: ring == Ring::Lab,
            revision: 0,
            updated_at: now,
        }
    }

    pub fn compliance_limit(&self, site_class: SiteClass) -> Duration {
        match site_class {
            SiteClass::Online => self.online_compliance_limit,
            SiteClass::Intermittent => self.intermittent_compliance_limit,
            SiteClass::AirGapped => self.air_gapped_compliance_limit,
        }
    }

    /// Every problem with the policy's values, as (field, description).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.min_success_rate) || self.min_success_rate.is_nan() {
            problems.push(("policy.min_success_rate", format!("must be in 0..=1 (got {})", self.min_success_rate)));
        }
        if self.min_sample_size > MAX_SAMPLE_SIZE {
            problems.push(("policy.min_sample_size", format!("must be at most {MAX_SAMPLE_SIZE}")));
        }
        for (field, limit) in [
            ("policy.online_compliance_limit", self.online_compliance_limit),
            ("policy.intermittent_compliance_limit", self.intermittent_compliance_limit),
            ("policy.air_gapped_compliance_limit", self.air_gapped_compliance_limit),
        ] {
            if limit.is_zero() || limit > MAX_COMPLIANCE_LIMIT {
                problems
                    .push((field, format!("must be more than 0 and at most 90 days (got {})", human_duration(limit))));
            }
        }
        problems
    }

    /// Whether `success`/`failure` counts make the ring compliant.
    pub fn is_compliant(&self, success: u64, failure: u64) -> bool {
        let reported = success.saturating_add(failure);
        reported >= self.min_sample_size.max(1) && success as f64 / reported as f64 >= self.min_success_rate
    }
}

/// What a gate check measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    SuccessRate,
    SampleSize,
    TimeToCompliance,
    CabApproval,
    EvidencePack,
    RollbackValidated,
}

/// One check with observed value, threshold, verdict and explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct GateCheck {
    pub kind: CheckKind,
    pub passed: bool,
    pub observed: f64,
    pub threshold: f64,
    pub message: String,
}

/// The verdict on leaving `ring`.
#[derive(Debug, Clone, PartialEq)]
pub struct GateEvaluation {
    pub ring: Ring,
    /// `None` when leaving `ring` completes the deployment.
    pub next_ring: Option<Ring>,
    pub passed: bool,
    pub checks: Vec<GateCheck>,
    pub evaluated_at: DateTime<Utc>,
}

impl GateEvaluation {
    pub fn failed_checks(&self) -> impl Iterator<Item = &GateCheck> {
        self.checks.iter().filter(|check| !check.passed)
    }

    /// Observed success rate of the ring, for the gauge.
    pub fn success_rate(&self) -> Option<f64> {
        self.checks.iter().find(|c| c.kind == CheckKind::SuccessRate).map(|c| c.observed)
    }
}

/// Evaluates the gate to leave the deployment's current ring under `policy`
/// (which must be that ring's).
pub fn evaluate(deployment: &Deployment, policy: &RingPolicy, now: DateTime<Utc>) -> GateEvaluation {
    let ring = deployment.current_ring;
    let progress = deployment.progress(ring);
    let (success, failure) = progress.map_or((0, 0), |p| (p.success_count, p.failure_count));
    let reported = success.saturating_add(failure);
    let rate = if reported == 0 { 0.0 } else { success as f64 / reported as f64 };
    let mut checks = Vec::with_capacity(6);

    checks.push(GateCheck {
        kind: CheckKind::SampleSize,
        passed: reported >= policy.min_sample_size,
        observed: reported as f64,
        threshold: policy.min_sample_size as f64,
        message: if reported >= policy.min_sample_size {
            format!(
                "{} devices reported on {ring} (minimum {})",
                thousands(reported),
                thousands(policy.min_sample_size)
            )
        } else {
            format!(
                "only {} devices reported on {ring}; at least {} are needed",
                thousands(reported),
                thousands(policy.min_sample_size)
            )
        },
    });

    let rate_ok = reported > 0 && rate >= policy.min_success_rate;
    checks.push(GateCheck {
        kind: CheckKind::SuccessRate,
        passed: rate_ok,
        observed: rate,
        threshold: policy.min_success_rate,
        message: format!(
            "success rate {rate:.3} {} {:.3} on {ring} with {} devices reported",
            if rate_ok { ">=" } else { "<" },
            policy.min_success_rate,
            thousands(reported)
        ),
    });

    let limit = policy.compliance_limit(deployment.site_class);
    let site = deployment.site_class.as_label().to_ascii_uppercase();
    let compliance = match progress {
        None => GateCheck {
            kind: CheckKind::TimeToCompliance,
            passed: false,
            observed: 0.0,
            threshold: limit.as_secs_f64(),
            message: format!("{ring} has not started: start the deployment first"),
        },
        Some(p) => match p.compliant_at {
            Some(at) => {
                let took = (at - p.started_at).to_std().unwrap_or_default();
                GateCheck {
                    kind: CheckKind::TimeToCompliance,
                    passed: took <= limit,
                    observed: took.as_secs_f64(),
                    threshold: limit.as_secs_f64(),
                    message: format!(
                        "{ring} reached compliance in {} ({} limit for {site} sites is {})",
                        human_duration(took),
                        if took <= limit { "within the" } else { "over the" },
                        human_duration(limit)
                    ),
                }
            }
            None => {
                let waited = (now - p.started_at).to_std().unwrap_or_default();
                GateCheck {
                    kind: CheckKind::TimeToCompliance,
                    passed: false,
                    observed: waited.as_secs_f64(),
                    threshold: limit.as_secs_f64(),
                    message: format!(
                        "{ring} is not compliant after {} (limit for {site} sites is {})",
                        human_duration(waited),
                        human_duration(limit)
                    ),
                }
            }
        },
    };
    checks.push(compliance);

    if policy.require_cab_approval && deployment.requires_cab_approval {
        let approved = deployment.cab_approver.is_some()
            && !matches!(deployment.status, DeploymentStatus::AwaitingCab | DeploymentStatus::Rejected);
        checks.push(GateCheck {
            kind: CheckKind::CabApproval,
            passed: approved,
            observed: f64::from(u8::from(approved)),
            threshold: 1.0,
            message: match &deployment.cab_approver {
                Some(approver) if approved => {
                    format!("risk score {} needs CAB approval: approved by {approver}", deployment.risk_score)
                }
                _ => format!("risk score {} needs a CAB approval before leaving {ring}", deployment.risk_score),
            },
        });
    }

    if policy.require_evidence_pack {
        let present = !deployment.evidence_pack_id.is_nil();
        checks.push(GateCheck {
            kind: CheckKind::EvidencePack,
            passed: present,
            observed: f64::from(u8::from(present)),
            threshold: 1.0,
            message: if present {
                format!("evidence pack {} attached", deployment.evidence_pack_id)
            } else {
                "no evidence pack attached".to_owned()
            },
        });
    }

    if policy.require_rollback_validated {
        let validated = progress.and_then(|p| p.rollback_validated_at).is_some();
        checks.push(GateCheck {
            kind: CheckKind::RollbackValidated,
            passed: validated,
            observed: f64::from(u8::from(validated)),
            threshold: 1.0,
            message: if validated {
                format!("rollback validated on {ring}")
            } else {
                format!("the rollback has not been validated on {ring}; report an outcome with rollback_validated")
            },
        });
    }

    let next_ring = if ring == deployment.target_ring { None } else { ring.next() };
    GateEvaluation { ring, next_ring, passed: checks.iter().all(|c| c.passed), checks, evaluated_at: now }
}

/// 1204 → "1,204".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 90061 s → "1d 1h 1m".
pub fn human_duration(duration: Duration) -> String {
    struct Human(u64);
    impl fmt::Display for Human {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let (days, hours, minutes, seconds) = (self.0 / 86_400, self.0 / 3600 % 24, self.0 / 60 % 60, self.0 % 60);
            let parts: Vec<String> = [(days, "d"), (hours, "h"), (minutes, "m")]
                .into_iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, unit)| format!("{n}{unit}"))
                .collect();
            if parts.is_empty() { write!(f, "{seconds}s") } else { f.write_str(&parts.join(" ")) }
        }
    }
    Human(duration.as_secs()).to_string()
}
