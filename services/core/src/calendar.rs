//! The change calendar: the windows and the global freeze ("stop the
//! line") together, and what they say about one step of a deployment —
//! starting in a ring, promoting into the next, rolling back — at an
//! instant: nothing holds it, or a hold that names the freeze or window and
//! when it ends (or opens), for the gate's `window` check, the controller's
//! next action and the FAILED_PRECONDITION of a held RPC.

use chrono::{DateTime, Utc};

use crate::deployment::Deployment;
use crate::gate::{CheckKind, GateCheck, GateEvaluation};
use crate::ring::Ring;
use crate::window::{self, ChangeWindow, Step, WindowVerdict};

/// The subject of the freeze's entries in the calendar's change log (so no window may take the name).
pub const FREEZE_SUBJECT: &str = "freeze";

/// Longest a freeze may be set for: it must end by itself.
pub const MAX_FREEZE: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// The global freeze: no new work is dispatched and nothing is promoted
/// anywhere until it is lifted or expires. Rollbacks and reports go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    pub reason: String,
    pub set_by: String,
    pub set_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Freeze {
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// A window as stored: with its version and times.
#[derive(Debug, Clone)]
pub struct WindowRecord {
    pub window: ChangeWindow,
    /// Optimistic-concurrency revision (the API's etag).
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a calendar change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum CalendarChangeKind {
    WindowCreated,
    WindowUpdated,
    WindowDeleted,
    FreezeSet,
    FreezeLifted,
    /// The freeze reached its expiry and was lifted by the controller.
    FreezeExpired,
}

/// A window or the freeze, as a calendar change saw it.
#[derive(Debug, Clone)]
pub enum CalendarEntry {
    Window(Box<WindowRecord>),
    Freeze(Freeze),
}

/// One entry of the calendar's change log.
#[derive(Debug, Clone)]
pub struct CalendarChange {
    /// Position in the log; strictly increasing.
    pub seq: i64,
    pub kind: CalendarChangeKind,
    /// The window's name, or `freeze`.
    pub subject: String,
    /// None for a creation or a freeze set when none held.
    pub before: Option<CalendarEntry>,
    /// None for a deletion, a lift or an expiry.
    pub after: Option<CalendarEntry>,
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    pub at: DateTime<Utc>,
}

/// Every window and the freeze, as read together.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    pub windows: Vec<ChangeWindow>,
    pub freeze: Option<Freeze>,
}

/// Why a step may not run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The global freeze holds until `until`.
    Frozen { reason: String, until: DateTime<Utc> },
    /// Inside deny window `window` until `until`.
    Denied { window: String, until: DateTime<Utc>, zone: chrono_tz::Tz },
    /// Allow windows apply and none is open; `window` opens next at `opens` (none: never again).
    Closed { window: String, opens: Option<DateTime<Utc>>, zone: chrono_tz::Tz },
}

impl Hold {
    /// Every [`Hold::label`], for metrics that report each.
    pub const LABELS: [&'static str; 3] = ["freeze", "deny_window", "outside_allow_window"];

    /// What kind of hold, as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Hold::Frozen { .. } => Self::LABELS[0],
            Hold::Denied { .. } => Self::LABELS[1],
            Hold::Closed { .. } => Self::LABELS[2],
        }
    }

    /// When the hold ends by itself, if it does.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        match self {
            Hold::Frozen { until, .. } | Hold::Denied { until, .. } => Some(*until),
            Hold::Closed { opens, .. } => *opens,
        }
    }

    /// E.g. "change freeze 'quarter-close' until 2026-12-31T18:00Z",
    /// "deny window 'month-end' until 2026-12-01T06:00 Europe/Berlin".
    pub fn explain(&self) -> String {
        match self {
            Hold::Frozen { reason, until } => {
                format!("change freeze '{reason}' until {}", until.format("%Y-%m-%dT%H:%MZ"))
            }
            Hold::Denied { window, until, zone } => {
                format!("deny window '{window}' until {}", local_time(*until, *zone))
            }
            Hold::Closed { window, opens: Some(opens), zone } => {
                format!("outside allow windows until '{window}' opens at {}", local_time(*opens, *zone))
            }
            Hold::Closed { window, opens: None, .. } => {
                format!("outside allow windows, and '{window}' (the only one that applies) never opens again")
            }
        }
    }
}

/// `at` on the wall clock of `zone`, named: "2026-12-07T22:00 Europe/Berlin".
pub fn local_time(at: DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    format!("{} {}", at.with_timezone(&zone).format("%Y-%m-%dT%H:%M"), zone.name())
}

impl Calendar {
    /// The freeze if it holds at `now`.
    pub fn freeze_at(&self, now: DateTime<Utc>) -> Option<&Freeze> {
        self.freeze.as_ref().filter(|freeze| freeze.holds_at(now))
    }

    /// What holds `step` at `now`: the freeze first (never a rollback), then the windows.
    pub fn hold(&self, step: &Step, now: DateTime<Utc>) -> Option<Hold> {
        if !step.rollback
            && let Some(freeze) = self.freeze_at(now)
        {
            return Some(Hold::Frozen { reason: freeze.reason.clone(), until: freeze.expires_at });
        }
        let zone_of =
            |name: &str| self.windows.iter().find(|w| w.name == name).map_or(chrono_tz::Tz::UTC, |w| w.time_zone);
        match window::evaluate(&self.windows, step, now) {
            WindowVerdict::Open => None,
            WindowVerdict::Denied { window, until } => Some(Hold::Denied { zone: zone_of(&window), window, until }),
            WindowVerdict::Closed { window, opens } => Some(Hold::Closed { zone: zone_of(&window), window, opens }),
        }
    }

    /// What holds dispatching `deployment`'s work to `ring` (a start or a
    /// promotion into it; with `rollback`, its removal from it).
    pub fn hold_for(&self, deployment: &Deployment, ring: Ring, rollback: bool, now: DateTime<Utc>) -> Option<Hold> {
        let step =
            Step { ring, site_class: deployment.site_class, connector_type: deployment.connector_type, rollback };
        self.hold(&step, now)
    }

    /// Adds the `window` check to the gate to leave `deployment`'s current
    /// ring: promoting dispatches to the next ring, which the calendar may
    /// hold. Completing (leaving GLOBAL) dispatches nothing and is never held.
    /// Returns the hold, if any.
    pub fn check_gate(&self, deployment: &Deployment, gate: &mut GateEvaluation) -> Option<Hold> {
        let now = gate.evaluated_at;
        let hold = gate.next_ring.and_then(|next| self.hold_for(deployment, next, false, now));
        let check = match (&hold, gate.next_ring) {
            (Some(hold), _) => GateCheck {
                kind: CheckKind::Window,
                passed: false,
                observed: hold.until().map_or(f64::INFINITY, |until| (until - now).num_seconds() as f64),
                threshold: 0.0,
                message: hold.explain(),
            },
            (None, Some(next)) => GateCheck {
                kind: CheckKind::Window,
                passed: true,
                observed: 0.0,
                threshold: 0.0,
                message: format!("no freeze or window holds dispatching to {next}"),
            },
            (None, None) => GateCheck {
                kind: CheckKind::Window,
                passed: true,
                observed: 0.0,
                threshold: 0.0,
                message: "completing dispatches nothing: no window applies".to_owned(),
            },
        };
        gate.passed &= check.passed;
        gate.checks.push(check);
        hold
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{NaiveDate, TimeZone};
    use uuid::Uuid;

    use super::*;
    use crate::deployment::{ChangeContext, ConnectorType, NewDeployment, SiteClass};
    use crate::window::WindowKind;

    fn utc(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap()
    }

    fn nights() -> ChangeWindow {
        let start = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap().and_hms_opt(22, 0, 0).unwrap();
        let mut w = ChangeWindow::new(
            "weekday-nights",
            WindowKind::Allow,
            "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
            start,
            "Europe/Berlin",
            Duration::from_secs(6 * 3600),
        )
        .unwrap();
        w.scope.rings = vec![Ring::Pilot];
        w
    }

    fn deployment() -> Deployment {
        let ctx = ChangeContext {
            actor: "t".into(),
            reason: String::new(),
            correlation_id: "c".into(),
            now: utc(1, 0),
            fence: None,
        };
        let new = NewDeployment {
            connector_type: ConnectorType::Intune,
            site_class: SiteClass::Online,
            ..NewDeployment::example()
        };
        Deployment::create(Uuid::new_v4(), new, &ctx).0
    }

    fn gate(next: Option<Ring>, at: DateTime<Utc>) -> GateEvaluation {
        GateEvaluation { ring: Ring::Canary, next_ring: next, passed: true, checks: vec![], evaluated_at: at }
    }

    #[test]
    fn the_freeze_holds_everything_but_rollbacks_until_it_expires() {
        let calendar = Calendar {
            windows: vec![],
            freeze: Some(Freeze {
                reason: "quarter-close".into(),
                set_by: "a".into(),
                set_at: utc(1, 0),
                expires_at: utc(31, 18),
            }),
        };
        let d = deployment();
        let hold = calendar.hold_for(&d, Ring::Lab, false, utc(2, 0)).unwrap();
        assert_eq!(hold.explain(), "change freeze 'quarter-close' until 2026-12-31T18:00Z");
        assert_eq!(calendar.hold_for(&d, Ring::Lab, true, utc(2, 0)), None, "rollbacks pass");
        assert_eq!(calendar.hold_for(&d, Ring::Lab, false, utc(31, 18)), None, "expired");
    }

    #[test]
    fn the_gate_check_names_the_window_and_its_local_opening() {
        let calendar = Calendar { windows: vec![nights()], freeze: None };
        let d = deployment();
        // Wednesday 2026-12-02 12:00 UTC: the next opening is 22:00 Berlin (21:00 UTC).
        let mut held = gate(Some(Ring::Pilot), utc(2, 12));
        calendar.check_gate(&d, &mut held);
        assert!(!held.passed);
        let check = held.checks.last().unwrap();
        assert_eq!(check.kind, CheckKind::Window);
        assert_eq!(
            check.message,
            "outside allow windows until 'weekday-nights' opens at 2026-12-02T22:00 Europe/Berlin"
        );
        assert_eq!(check.observed, 9.0 * 3600.0);
        let mut open = gate(Some(Ring::Pilot), utc(2, 22));
        calendar.check_gate(&d, &mut open);
        assert!(open.passed, "{:?}", open.checks);
        let mut elsewhere = gate(Some(Ring::Department), utc(2, 12));
        calendar.check_gate(&d, &mut elsewhere);
        assert!(elsewhere.passed, "the window is scoped to PILOT");
        let mut completing = gate(None, utc(2, 12));
        calendar.check_gate(&d, &mut completing);
        assert!(completing.passed);
    }
}
