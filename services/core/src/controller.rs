//! What the rollout controller does next with a deployment, as a pure
//! function of the deployment, its ring's policy, the gate's verdict and the
//! time: promote once the gate passes and the ring has baked, roll back when
//! the failure rule trips, flag a stall when outcomes stop, or wait — always
//! with a sentence saying why, and when the change calendar (a freeze, a
//! window) holds the step, which hold and until when.

use chrono::{DateTime, Utc};

use super::calendar::{Calendar, Hold};
use super::deployment::Deployment;
use super::gate::{CheckKind, GateEvaluation, RingPolicy, human_duration, thousands};
use super::lifecycle::DeploymentStatus;

/// The controller's decision.
#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Decision {
    /// Leave the current ring now (the gate passed, the ring has baked).
    Promote,
    /// The failure rule tripped.
    RollBack { reason: String },
    /// No outcomes for the stall timeout: flag it, move nothing.
    FlagStalled { reason: String },
    /// Nothing to do now; `until` is when something may change on its own.
    Wait { until: Option<DateTime<Utc>>, why: String },
    /// The controller never acts on this deployment (terminal, not deploying, paused).
    Skip { why: String },
}

impl Decision {
    pub fn as_label(&self) -> &'static str {
        self.into()
    }

    /// The next action as GetDeployment shows it, with its time if known.
    pub fn explain(&self, deployment: &Deployment) -> (String, Option<DateTime<Utc>>) {
        match self {
            Decision::Promote => (format!("promotes out of {} now", deployment.current_ring), None),
            Decision::RollBack { reason } => (format!("rolls back now: {reason}"), None),
            Decision::FlagStalled { reason } => (format!("flags the deployment stalled: {reason}"), None),
            Decision::Wait { until, why } => (why.clone(), *until),
            Decision::Skip { why } => (why.clone(), None),
        }
    }
}

/// Decides what to do with `deployment`, whose current ring's policy is
/// `policy` and gate verdict `gate` (evaluated at `now`, with the calendar's
/// `window` check), under `calendar`.
pub fn decide(
    deployment: &Deployment,
    policy: &RingPolicy,
    gate: &GateEvaluation,
    calendar: &Calendar,
    now: DateTime<Utc>,
) -> Decision {
    if deployment.status != DeploymentStatus::Deploying {
        let why = match deployment.status {
            DeploymentStatus::AwaitingCab => "waits for a CAB decision".to_owned(),
            DeploymentStatus::Approved => "waits for StartDeployment".to_owned(),
            DeploymentStatus::Pending => "waits for its first status".to_owned(),
            status => format!("none: the deployment is {status}"),
        };
        return Decision::Skip { why };
    }
    if deployment.paused {
        return Decision::Skip {
            why: "none while paused: ResumeDeployment hands it back to the controller".to_owned(),
        };
    }
    let ring = deployment.current_ring;
    let Some(progress) = deployment.progress(ring) else {
        return Decision::Wait { until: None, why: format!("waits for {ring} to start") };
    };

    let reported = progress.reported();
    let failure_rate = if reported == 0 { 0.0 } else { progress.failure_count as f64 / reported as f64 };
    if reported >= policy.rollback_min_sample && failure_rate > policy.rollback_failure_rate {
        let reason = format!(
            "failure rate {failure_rate:.3} > {:.3} on {ring} with {} devices reported",
            policy.rollback_failure_rate,
            thousands(reported)
        );
        if let Some(hold) = calendar.hold_for(deployment, ring, true, now) {
            let why = format!("rolls back once {} no longer holds rollbacks: {reason}", hold.explain());
            return Decision::Wait { until: hold.until(), why };
        }
        return Decision::RollBack { reason };
    }

    // Only the calendar holding it: not stalled, and said below with the time it lets go.
    let held_only = gate.failed_checks().all(|check| check.kind == CheckKind::Window);
    let quiet_since = progress.last_reported_at.unwrap_or(progress.started_at);
    let stall_at = quiet_since + to_chrono(policy.stall_timeout);
    if deployment.stalled_since.is_none() && now >= stall_at && !gate.passed && !held_only {
        return Decision::FlagStalled {
            reason: format!(
                "no new outcomes on {ring} for {}",
                human_duration((now - quiet_since).to_std().unwrap_or_default())
            ),
        };
    }

    let next = gate.next_ring.map_or_else(|| "completion".to_owned(), |r| r.to_string());
    if !gate.passed && !held_only {
        let failed: Vec<_> = gate.failed_checks().map(|c| c.message.as_str()).collect();
        let until = deployment.stalled_since.is_none().then_some(stall_at);
        return Decision::Wait { until, why: format!("waits for the gate to {next}: {}", failed.join("; ")) };
    }
    let hold = gate.next_ring.and_then(|next| calendar.hold_for(deployment, next, false, now));
    let baked_at = progress.started_at + to_chrono(policy.bake_time);
    // Baked before the calendar lets go: the hold says when it promotes.
    let held_past_bake = hold.as_ref().is_some_and(|hold| hold.until().is_none_or(|until| until >= baked_at));
    if now < baked_at && !held_past_bake {
        return Decision::Wait {
            until: Some(baked_at),
            why: format!(
                "promotes to {next} at {} if success rate stays >= {:.2}",
                baked_at.format("%Y-%m-%dT%H:%M:%SZ"),
                policy.min_success_rate
            ),
        };
    }
    if !policy.auto_promote {
        let why = match &hold {
            Some(hold) => {
                format!("gate to {next} held: {}; {ring} promotes manually (auto_promote off)", hold.explain())
            }
            None => format!("gate to {next} passed; {ring} promotes manually (auto_promote off)"),
        };
        return Decision::Wait { until: None, why };
    }
    match hold {
        None => Decision::Promote,
        Some(hold) => Decision::Wait { until: hold.until(), why: held_promotion(&hold, &next, policy) },
    }
}

/// The next action of a deployment ready to promote but for the calendar.
fn held_promotion(hold: &Hold, next: &str, policy: &RingPolicy) -> String {
    let rate = policy.min_success_rate;
    match hold {
        Hold::Frozen { .. } | Hold::Closed { opens: None, .. } => format!("waiting: {}", hold.explain()),
        Hold::Closed { window, opens: Some(opens), zone } => format!(
            "promotes to {next} at {}, when window {window} opens, if success rate stays >= {rate:.2}",
            super::calendar::local_time(*opens, *zone)
        ),
        Hold::Denied { window, until, zone } => format!(
            "promotes to {next} at {}, when deny window {window} ends, if success rate stays >= {rate:.2}",
            super::calendar::local_time(*until, *zone)
        ),
    }
}

fn to_chrono(duration: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Freeze;
    use crate::deployment::{ChangeContext, ConnectorType, Handover, NewDeployment, Outcome};
    use crate::gate::evaluate;
    use crate::ring::Ring;
    use crate::window::{ChangeWindow, WindowKind};
    use uuid::Uuid;

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z").unwrap().with_timezone(&Utc)
            + chrono::Duration::hours(hours)
    }

    fn ctx(at: DateTime<Utc>) -> ChangeContext {
        ChangeContext { actor: "test".into(), reason: String::new(), correlation_id: "c".into(), now: at, fence: None }
    }

    /// A CANARY deployment started at t(0) with `success`/`failure` reported at t(1).
    fn canary(success: u64, failure: u64) -> (Deployment, RingPolicy) {
        let new = NewDeployment { connector_type: ConnectorType::Jamf, ..NewDeployment::example() };
        let (mut d, _) = Deployment::create(Uuid::new_v4(), new, &ctx(t(0)));
        d.start(&Handover { connector: "sim".into(), object_id: None, device_count: None }, &ctx(t(0))).unwrap();
        let lab = GateEvaluation {
            ring: Ring::Lab,
            next_ring: Some(Ring::Canary),
            passed: true,
            checks: vec![],
            evaluated_at: t(0),
        };
        d.promote(&lab, None, &ctx(t(0))).unwrap();
        let policy = RingPolicy::default_for(Ring::Canary, t(0));
        if success + failure > 0 {
            let outcome = Outcome {
                ring: Ring::Canary,
                success_count: success,
                failure_count: failure,
                rollback_validated: false,
            };
            d.report_outcome(outcome, &policy, &ctx(t(1))).unwrap();
        }
        (d, policy)
    }

    fn decision(d: &Deployment, policy: &RingPolicy, at: DateTime<Utc>) -> Decision {
        decide(d, policy, &evaluate(d, policy, at), &Calendar::default(), at)
    }

    #[test]
    fn promotes_only_once_the_ring_has_baked() {
        let (d, policy) = canary(100, 0);
        match decision(&d, &policy, t(23)) {
            Decision::Wait { until, why } => {
                assert_eq!(until, Some(t(24)));
                assert_eq!(why, "promotes to PILOT at 2026-11-26T00:00:00Z if success rate stays >= 0.98");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decision(&d, &policy, t(24)), Decision::Promote);
        let manual = RingPolicy { auto_promote: false, ..policy };
        assert!(matches!(decision(&d, &manual, t(30)), Decision::Wait { until: None, .. }));
    }

    #[test]
    fn rolls_back_above_the_failure_rate_with_enough_devices() {
        let (d, policy) = canary(95, 5);
        assert!(!matches!(decision(&d, &policy, t(2)), Decision::RollBack { .. }), "exactly 5 % does not trip");
        let (d, policy) = canary(94, 6);
        assert_eq!(
            decision(&d, &policy, t(2)),
            Decision::RollBack { reason: "failure rate 0.060 > 0.050 on CANARY with 100 devices reported".into() }
        );
        let (d, policy) = canary(30, 19);
        assert!(matches!(decision(&d, &policy, t(2)), Decision::Wait { .. }), "49 devices are below the sample");
    }

    #[test]
    fn flags_a_stall_once_and_never_acts_when_paused_or_not_deploying() {
        let (mut d, policy) = canary(0, 0);
        assert!(matches!(decision(&d, &policy, t(23)), Decision::Wait { until: Some(_), .. }));
        assert!(matches!(decision(&d, &policy, t(24)), Decision::FlagStalled { .. }));
        d.flag_stalled(&ctx(t(24))).unwrap();
        assert!(matches!(decision(&d, &policy, t(48)), Decision::Wait { .. }), "flagged once");
        d.pause(&ctx(t(48))).unwrap();
        assert!(matches!(decision(&d, &policy, t(100)), Decision::Skip { .. }));
        d.resume(&ctx(t(100))).unwrap();
        d.fail(&ctx(t(100))).unwrap();
        assert_eq!(decision(&d, &policy, t(100)), Decision::Skip { why: "none: the deployment is FAILED".into() });
    }

    fn held_decision(d: &Deployment, policy: &RingPolicy, calendar: &Calendar, at: DateTime<Utc>) -> Decision {
        let mut gate = evaluate(d, policy, at);
        calendar.check_gate(d, &mut gate);
        decide(d, policy, &gate, calendar, at)
    }

    fn window(name: &str, kind: WindowKind, rule: &str, hours: u64) -> ChangeWindow {
        let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap().and_hms_opt(22, 0, 0).unwrap();
        ChangeWindow::new(name, kind, rule, start, "Europe/Berlin", std::time::Duration::from_secs(hours * 3600))
            .unwrap()
    }

    #[test]
    fn the_calendar_holds_a_baked_promotion_and_says_until_when() {
        let (d, policy) = canary(100, 0);
        let mut nights = window("weekday-nights", WindowKind::Allow, "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", 6);
        nights.scope.rings = vec![Ring::Pilot];
        let calendar = Calendar { windows: vec![nights], freeze: None };
        // Thursday 2026-11-26 01:00 in Berlin: inside Wednesday night's window.
        assert_eq!(held_decision(&d, &policy, &calendar, t(24)), Decision::Promote);
        // 07:00 in Berlin: closed until 22:00 (21:00 UTC).
        assert_eq!(
            held_decision(&d, &policy, &calendar, t(30)),
            Decision::Wait {
                until: Some(t(45)),
                why: "promotes to PILOT at 2026-11-26T22:00 Europe/Berlin, when window weekday-nights opens, \
                      if success rate stays >= 0.98"
                    .into()
            }
        );
        // Baking until t(24), and the window opens before that (t(21)): the bake says when.
        assert!(
            matches!(held_decision(&d, &policy, &calendar, t(12)), Decision::Wait { until: Some(at), .. } if at == t(24))
        );

        let until = t(24 * 36 + 18);
        let frozen = Freeze { reason: "quarter-close".into(), set_by: "a".into(), set_at: t(0), expires_at: until };
        let calendar = Calendar { windows: vec![], freeze: Some(frozen) };
        assert_eq!(
            held_decision(&d, &policy, &calendar, t(30)),
            Decision::Wait {
                until: Some(until),
                why: "waiting: change freeze 'quarter-close' until 2026-12-31T18:00Z".into()
            }
        );
        assert_eq!(held_decision(&d, &policy, &calendar, until), Decision::Promote, "the freeze expired");
    }

    #[test]
    fn rollbacks_pass_the_freeze_and_deny_windows_unless_a_window_forbids_them() {
        let (d, policy) = canary(90, 10);
        let frozen = Freeze { reason: "incident".into(), set_by: "a".into(), set_at: t(0), expires_at: t(100) };
        let mut deny = window("month-end", WindowKind::Deny, "FREQ=DAILY", 24);
        let calendar = Calendar { windows: vec![deny.clone()], freeze: Some(frozen) };
        assert!(matches!(held_decision(&d, &policy, &calendar, t(2)), Decision::RollBack { .. }));
        deny.forbids_rollback = true;
        let calendar = Calendar { windows: vec![deny], freeze: None };
        match held_decision(&d, &policy, &calendar, t(2)) {
            Decision::Wait { until: Some(_), why } => {
                assert!(why.starts_with("rolls back once deny window 'month-end' until"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fresh_outcomes_clear_a_stall() {
        let (mut d, policy) = canary(0, 0);
        d.flag_stalled(&ctx(t(30))).unwrap();
        let outcome = Outcome { ring: Ring::Canary, success_count: 10, failure_count: 0, rollback_validated: false };
        d.report_outcome(outcome, &policy, &ctx(t(31))).unwrap();
        assert_eq!(d.stalled_since, None);
    }
}
