//! Ring policies and promotion-gate evaluation (DESIGN §2): the checks that
//! must pass to leave a ring, each reported with what was observed, what was
//! required and a sentence an operator can act on. Evaluation is a pure
//! function of the deployment, the ring's policy and the time.

use crate::Label;
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
    /// Minimum time in the ring before the controller promotes.
    pub bake_time: Duration,
    /// Whether the controller promotes by itself once the gate passes and the ring has baked.
    pub auto_promote: bool,
    /// The controller rolls back when the ring's failure rate exceeds this…
    pub rollback_failure_rate: f64,
    /// …with at least this many devices reported.
    pub rollback_min_sample: u64,
    /// No new outcomes for this long: the deployment is flagged stalled (not moved).
    pub stall_timeout: Duration,
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
    /// DESIGN §2 defaults (and the controller's: bake LAB 1 h, CANARY 24 h,
    /// PILOT 48 h, DEPARTMENT 72 h — GLOBAL, left open, bakes 72 h before
    /// completing; auto-promote on; roll back above 5 % failures with at least
    /// 50 devices; stalled after 24 h without outcomes): success rate CANARY 0.98, PILOT 0.97, DEPARTMENT and
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
            bake_time: Duration::from_secs(
                HOUR * match ring {
                    Ring::Lab => 1,
                    Ring::Canary => 24,
                    Ring::Pilot => 48,
                    Ring::Department | Ring::Global => 72,
                },
            ),
            auto_promote: true,
            rollback_failure_rate: 0.05,
            rollback_min_sample: 50,
            stall_timeout: Duration::from_secs(24 * HOUR),
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
        if !(0.0..=1.0).contains(&self.rollback_failure_rate) || self.rollback_failure_rate.is_nan() {
            problems.push((
                "policy.rollback_failure_rate",
                format!("must be in 0..=1 (got {})", self.rollback_failure_rate),
            ));
        }
        if self.rollback_min_sample > MAX_SAMPLE_SIZE {
            problems.push(("policy.rollback_min_sample", format!("must be at most {MAX_SAMPLE_SIZE}")));
        }
        if self.bake_time > MAX_COMPLIANCE_LIMIT {
            problems.push((
                "policy.bake_time",
                format!("must be at most 90 days (got {})", human_duration(self.bake_time)),
            ));
        }
        if self.stall_timeout.is_zero() || self.stall_timeout > MAX_COMPLIANCE_LIMIT {
            problems.push((
                "policy.stall_timeout",
                format!("must be more than 0 and at most 90 days (got {})", human_duration(self.stall_timeout)),
            ));
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

/// One policy per ring, looked up by ring.
#[derive(Debug, Clone, PartialEq)]
pub struct RingPolicies(Vec<RingPolicy>);

impl RingPolicies {
    /// The policies, whatever their order; `None` unless each ring has exactly one.
    pub fn new(mut policies: Vec<RingPolicy>) -> Option<RingPolicies> {
        policies.sort_by_key(|policy| policy.ring);
        let complete = policies.iter().map(|policy| policy.ring).eq(Ring::ALL.iter().copied());
        complete.then_some(RingPolicies(policies))
    }

    /// In ring order.
    pub fn iter(&self) -> std::slice::Iter<'_, RingPolicy> {
        self.0.iter()
    }
}

impl std::ops::Index<Ring> for RingPolicies {
    type Output = RingPolicy;

    fn index(&self, ring: Ring) -> &RingPolicy {
        &self.0[usize::from(ring.number())]
    }
}

impl IntoIterator for RingPolicies {
    type Item = RingPolicy;
    type IntoIter = std::vec::IntoIter<RingPolicy>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// What a gate check measures.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    serde::Serialize,
    serde::Deserialize,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    SuccessRate,
    SampleSize,
    TimeToCompliance,
    CabApproval,
    EvidencePack,
    RollbackValidated,
    /// The change calendar (freeze, windows) lets the step into the next ring run now.
    Window,
}

/// One check with observed value, threshold, verdict and explanation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateCheck {
    pub kind: CheckKind,
    pub passed: bool,
    pub observed: f64,
    pub threshold: f64,
    pub message: String,
}

/// The verdict on leaving `ring`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration as people write it, to the second: 90061 s → "1day 1h 1m 1s".
pub fn human_duration(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_policies_are_looked_up_by_ring_and_complete() {
        let now = DateTime::UNIX_EPOCH;
        let shuffled: Vec<_> = Ring::ALL.iter().rev().map(|&ring| RingPolicy::default_for(ring, now)).collect();
        let policies = RingPolicies::new(shuffled.clone()).expect("one per ring");
        for &ring in Ring::ALL {
            assert_eq!(policies[ring].ring, ring);
        }
        assert_eq!(policies.iter().map(|p| p.ring).collect::<Vec<_>>(), Ring::ALL);
        assert!(RingPolicies::new(shuffled[1..].to_vec()).is_none(), "a ring without policy");
        let twice = [shuffled.clone(), vec![shuffled[0].clone()]].concat();
        assert!(RingPolicies::new(twice).is_none(), "a ring with two");
    }
    use crate::deployment::{ChangeContext, Handover, NewDeployment, Outcome};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn ctx(at: DateTime<Utc>) -> ChangeContext {
        ChangeContext { actor: "ops".into(), reason: String::new(), correlation_id: "c".into(), now: at, fence: None }
    }

    /// A deployment DEPLOYING in `ring` (promoted there without gates), started at `now()`.
    fn deploying(ring: Ring, risk_score: u8, site_class: SiteClass) -> Deployment {
        let new = NewDeployment { risk_score, site_class, ..NewDeployment::example() };
        let (mut d, _) = Deployment::create(Uuid::new_v4(), new, &ctx(now()));
        if d.requires_cab_approval {
            d.approve(&ChangeContext { actor: "bob".into(), ..ctx(now()) }).unwrap();
        }
        d.start(&Handover { connector: "sim".into(), object_id: None, device_count: None }, &ctx(now())).unwrap();
        while d.current_ring != ring {
            let pass = GateEvaluation {
                ring: d.current_ring,
                next_ring: d.current_ring.next(),
                passed: true,
                checks: vec![],
                evaluated_at: now(),
            };
            d.promote(&pass, None, &ctx(now())).unwrap();
        }
        d
    }

    fn report(d: &mut Deployment, policy: &RingPolicy, success: u64, failure: u64, at: DateTime<Utc>) {
        let outcome =
            Outcome { ring: d.current_ring, success_count: success, failure_count: failure, rollback_validated: false };
        d.report_outcome(outcome, policy, &ctx(at)).unwrap();
    }

    fn check(evaluation: &GateEvaluation, kind: CheckKind) -> &GateCheck {
        evaluation.checks.iter().find(|c| c.kind == kind).unwrap_or_else(|| panic!("no {kind:?} check"))
    }

    #[test]
    fn exactly_at_the_threshold_passes_and_just_below_fails() {
        let policy = RingPolicy::default_for(Ring::Pilot, now());
        let mut d = deploying(Ring::Pilot, 10, SiteClass::Online);
        report(&mut d, &policy, 970, 30, now() + chrono::Duration::hours(1));
        let at = evaluate(&d, &policy, now() + chrono::Duration::hours(2));
        assert!(check(&at, CheckKind::SuccessRate).passed);
        assert!(at.passed, "{at:#?}");
        assert_eq!(at.next_ring, Some(Ring::Department));

        let mut d = deploying(Ring::Pilot, 10, SiteClass::Online);
        report(&mut d, &policy, 1158, 46, now() + chrono::Duration::hours(1));
        let below = evaluate(&d, &policy, now() + chrono::Duration::hours(2));
        let rate = check(&below, CheckKind::SuccessRate);
        assert!(!rate.passed && !below.passed);
        assert_eq!(rate.message, "success rate 0.962 < 0.970 on PILOT with 1,204 devices reported");
        assert!((rate.observed - 1158.0 / 1204.0).abs() < 1e-12 && rate.threshold == 0.97);
    }

    #[test]
    fn zero_devices_fail_every_measured_check() {
        let policy = RingPolicy::default_for(Ring::Canary, now());
        let d = deploying(Ring::Canary, 10, SiteClass::Online);
        let evaluation = evaluate(&d, &policy, now() + chrono::Duration::hours(1));
        assert!(!evaluation.passed);
        for kind in [CheckKind::SampleSize, CheckKind::SuccessRate, CheckKind::TimeToCompliance] {
            assert!(!check(&evaluation, kind).passed, "{kind:?}");
        }
        assert_eq!(check(&evaluation, CheckKind::SuccessRate).observed, 0.0);
        assert_eq!(
            check(&evaluation, CheckKind::TimeToCompliance).message,
            "CANARY is not compliant after 1h (limit for ONLINE sites is 1day)"
        );
    }

    #[test]
    fn a_perfect_rate_below_the_minimum_sample_does_not_pass() {
        let policy = RingPolicy::default_for(Ring::Canary, now());
        let mut d = deploying(Ring::Canary, 10, SiteClass::Online);
        report(&mut d, &policy, 24, 0, now());
        let evaluation = evaluate(&d, &policy, now());
        assert!(check(&evaluation, CheckKind::SuccessRate).passed);
        let sample = check(&evaluation, CheckKind::SampleSize);
        assert!(!sample.passed && !evaluation.passed);
        assert_eq!(sample.message, "only 24 devices reported on CANARY; at least 25 are needed");
        assert!(check(&evaluation, CheckKind::TimeToCompliance).message.contains("not compliant"));
        report(&mut d, &policy, 25, 0, now());
        assert!(evaluate(&d, &policy, now()).passed);
    }

    #[test]
    fn each_site_class_has_its_compliance_limit() {
        let policy = RingPolicy::default_for(Ring::Department, now());
        for (site, limit_hours) in [(SiteClass::Online, 24), (SiteClass::Intermittent, 72), (SiteClass::AirGapped, 168)]
        {
            for (hours, passes) in [(limit_hours, true), (limit_hours + 1, false)] {
                let mut d = deploying(Ring::Department, 10, site);
                report(&mut d, &policy, 1000, 0, now() + chrono::Duration::hours(hours));
                let evaluation = evaluate(&d, &policy, now() + chrono::Duration::hours(hours + 1));
                let compliance = check(&evaluation, CheckKind::TimeToCompliance);
                assert_eq!(compliance.passed, passes, "{site:?} after {hours}h: {}", compliance.message);
                assert_eq!(compliance.threshold, (limit_hours * 3600) as f64);
                assert_eq!(compliance.observed, (hours * 3600) as f64);
            }
        }
    }

    #[test]
    fn lab_needs_a_validated_rollback() {
        let policy = RingPolicy::default_for(Ring::Lab, now());
        let mut d = deploying(Ring::Lab, 10, SiteClass::Online);
        report(&mut d, &policy, 100, 0, now());
        let evaluation = evaluate(&d, &policy, now());
        assert!(!evaluation.passed);
        assert_eq!(evaluation.failed_checks().map(|c| c.kind).collect::<Vec<_>>(), vec![CheckKind::RollbackValidated]);
        let outcome = Outcome { ring: Ring::Lab, success_count: 100, failure_count: 0, rollback_validated: true };
        let events = d.report_outcome(outcome, &policy, &ctx(now())).unwrap();
        assert_eq!(events.len(), 1, "validating the rollback is news even with the same counts");
        assert!(evaluate(&d, &policy, now()).passed);
    }

    #[test]
    fn high_risk_needs_cab_beyond_canary_only_when_the_policy_says_so() {
        let canary = RingPolicy::default_for(Ring::Canary, now());
        let d = deploying(Ring::Canary, 80, SiteClass::Online);
        let evaluation = evaluate(&d, &canary, now());
        let cab = check(&evaluation, CheckKind::CabApproval);
        assert!(cab.passed, "approved by bob in the fixture");
        assert_eq!(cab.message, "risk score 80 needs CAB approval: approved by bob");
        let low = deploying(Ring::Canary, 50, SiteClass::Online);
        assert!(evaluate(&low, &canary, now()).checks.iter().all(|c| c.kind != CheckKind::CabApproval));
        let lab = RingPolicy::default_for(Ring::Lab, now());
        assert!(!lab.require_cab_approval && canary.require_cab_approval);
    }

    #[test]
    fn leaving_the_target_ring_completes() {
        let policy = RingPolicy::default_for(Ring::Global, now());
        let mut d = deploying(Ring::Global, 10, SiteClass::Online);
        report(&mut d, &policy, 1000, 0, now());
        let evaluation = evaluate(&d, &policy, now());
        assert!(evaluation.passed);
        assert_eq!(evaluation.next_ring, None);
        d.promote(&evaluation, None, &ctx(now())).unwrap();
        assert_eq!(d.status, DeploymentStatus::Completed);
    }

    #[test]
    fn policy_validation_names_each_bad_field() {
        let mut policy = RingPolicy::default_for(Ring::Lab, now());
        assert!(policy.problems().is_empty());
        policy.min_success_rate = 1.01;
        policy.online_compliance_limit = Duration::ZERO;
        policy.air_gapped_compliance_limit = MAX_COMPLIANCE_LIMIT + Duration::from_secs(1);
        let fields: Vec<_> = policy.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            ["policy.min_success_rate", "policy.online_compliance_limit", "policy.air_gapped_compliance_limit"]
        );
        policy.min_success_rate = f64::NAN;
        assert!(!policy.problems().is_empty());
    }

    #[test]
    fn numbers_read_like_a_person_wrote_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(90_061)), "1day 1h 1m 1s");
        assert_eq!(human_duration(Duration::from_millis(3_600_400)), "1h", "whole seconds");
    }

    proptest! {
        /// The success-rate check passes exactly when success/(success+failure)
        /// reaches the threshold, and the gate passes only when every check does.
        #[test]
        fn verdicts_follow_the_counts(success in 0u64..5000, failure in 0u64..500, rate in 0.5f64..1.0, sample in 0u64..1000) {
            let mut policy = RingPolicy::default_for(Ring::Pilot, now());
            policy.min_success_rate = rate;
            policy.min_sample_size = sample;
            let mut d = deploying(Ring::Pilot, 10, SiteClass::Online);
            if success + failure > 0 {
                report(&mut d, &policy, success, failure, now());
            }
            let evaluation = evaluate(&d, &policy, now());
            let reported = success + failure;
            let observed = if reported == 0 { 0.0 } else { success as f64 / reported as f64 };
            prop_assert_eq!(check(&evaluation, CheckKind::SuccessRate).passed, reported > 0 && observed >= rate);
            prop_assert_eq!(check(&evaluation, CheckKind::SampleSize).passed, reported >= sample);
            prop_assert_eq!(evaluation.passed, evaluation.checks.iter().all(|c| c.passed));
            // Compliance here is reached at once or never: it follows the same two checks.
            prop_assert_eq!(
                check(&evaluation, CheckKind::TimeToCompliance).passed,
                reported >= sample.max(1) && observed >= rate
            );
        }
    }
}
