//! Change windows: named allow and deny windows, each an RFC 5545
//! recurrence (the `rrule` crate) of local start times in an IANA time zone
//! (`chrono-tz`), open for a duration from each start, scoped to rings, site
//! classes and connector types (an empty list: all). Given the windows and
//! an instant, [`evaluate`] says whether a step may run and, when not, which
//! window decides and until when.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rrule::{RRule, RRuleSet, Unvalidated};

use crate::deployment::{ConnectorType, SiteClass};
use crate::ring::Ring;

/// Longest a window may stay open from one start.
pub const MAX_WINDOW_DURATION: Duration = Duration::from_secs(31 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum WindowKind {
    /// Steps run only inside an allow window that applies (when any applies).
    Allow,
    /// Steps never run inside a deny window that applies.
    Deny,
}

/// Where a window applies; an empty list places no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowScope {
    pub rings: Vec<Ring>,
    pub site_classes: Vec<SiteClass>,
    pub connector_types: Vec<ConnectorType>,
}

/// The step a window is asked about.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub ring: Ring,
    pub site_class: SiteClass,
    pub connector_type: ConnectorType,
    /// A rollback: allow windows do not hold it, and deny windows only when they say so.
    pub rollback: bool,
}

impl WindowScope {
    pub fn covers(&self, step: &Step) -> bool {
        (self.rings.is_empty() || self.rings.contains(&step.ring))
            && (self.site_classes.is_empty() || self.site_classes.contains(&step.site_class))
            && (self.connector_types.is_empty() || self.connector_types.contains(&step.connector_type))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("unknown IANA time zone {0:?}")]
    UnknownTimeZone(String),
    #[error("first start {0} does not exist in {1} (a daylight-saving gap)")]
    NoSuchLocalTime(NaiveDateTime, String),
    #[error("recurrence rule: {0}")]
    Rule(String),
    #[error("duration must be more than zero and at most 31 days")]
    Duration,
}

/// One named window.
#[derive(Debug, Clone)]
pub struct ChangeWindow {
    pub name: String,
    pub kind: WindowKind,
    pub scope: WindowScope,
    pub duration: Duration,
    /// Deny windows only: whether rollbacks are held too.
    pub forbids_rollback: bool,
    pub time_zone: chrono_tz::Tz,
    /// The rule as given (e.g. `FREQ=WEEKLY;BYDAY=MO`) and its first local start.
    pub rule: String,
    pub first_start: NaiveDateTime,
    pub description: String,
    recurrence: RRuleSet,
    /// The starts around the instants last asked about: the `rrule` crate
    /// walks from the first start on every query (a millisecond for a daily
    /// rule two years old), and every Get asks.
    starts: Arc<Mutex<Option<Starts>>>,
}

/// Every start within `from..=to`, and the first one after `to`.
#[derive(Debug)]
struct Starts {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    within: Vec<DateTime<Utc>>,
    next_after: Option<DateTime<Utc>>,
}

/// How far ahead of the instant asked about starts are computed at once.
const STARTS_AHEAD: chrono::Duration = chrono::Duration::days(62);

impl ChangeWindow {
    /// A window opening at each occurrence of `rule` (e.g. `FREQ=WEEKLY;BYDAY=MO,TU`),
    /// counted from `first_start`, a local time in `time_zone`.
    ///
    /// # Errors
    /// An unknown zone, a first start inside a daylight-saving gap, a rule
    /// the `rrule` crate refuses, or a duration out of range.
    pub fn new(
        name: impl Into<String>,
        kind: WindowKind,
        rule: &str,
        first_start: NaiveDateTime,
        time_zone: &str,
        duration: Duration,
    ) -> Result<ChangeWindow, WindowError> {
        let zone: chrono_tz::Tz = time_zone.parse().map_err(|_| WindowError::UnknownTimeZone(time_zone.to_owned()))?;
        if duration.is_zero() || duration > MAX_WINDOW_DURATION {
            return Err(WindowError::Duration);
        }
        // Of an ambiguous local time (the hour repeated in autumn), the first.
        let start = zone
            .from_local_datetime(&first_start)
            .earliest()
            .ok_or_else(|| WindowError::NoSuchLocalTime(first_start, time_zone.to_owned()))?;
        let parsed: RRule<Unvalidated> =
            rule.parse().map_err(|err: rrule::RRuleError| WindowError::Rule(err.to_string()))?;
        let recurrence = parsed
            .build(start.with_timezone(&rrule::Tz::Tz(zone)))
            .map_err(|err| WindowError::Rule(err.to_string()))?;
        Ok(ChangeWindow {
            name: name.into(),
            kind,
            scope: WindowScope::default(),
            duration,
            forbids_rollback: false,
            time_zone: zone,
            rule: rule.to_owned(),
            first_start,
            description: String::new(),
            recurrence,
            starts: Arc::default(),
        })
    }

    fn length(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::MAX)
    }

    fn in_zone(&self, at: DateTime<Utc>) -> DateTime<rrule::Tz> {
        at.with_timezone(&rrule::Tz::Tz(self.time_zone))
    }

    /// Runs `query` on the starts covering `at - duration ..= at`, computed
    /// again only when `at` leaves the range they cover.
    fn with_starts<T>(&self, at: DateTime<Utc>, query: impl FnOnce(&Starts) -> T) -> T {
        let earliest = at - self.length();
        let mut cached = self.starts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !cached.as_ref().is_some_and(|starts| starts.from <= earliest && at <= starts.to) {
            *cached = Some(self.compute_starts(earliest, at + STARTS_AHEAD));
        }
        query(cached.as_ref().expect("just filled"))
    }

    fn compute_starts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Starts {
        let utc = |d: &DateTime<rrule::Tz>| d.with_timezone(&Utc);
        let found = self.recurrence.clone().after(self.in_zone(from)).before(self.in_zone(to)).all(u16::MAX);
        let mut within: Vec<_> = found.dates.iter().map(utc).filter(|d| from <= *d && *d <= to).collect();
        // A rule with more starts than one query returns (minutely…): cover only up to the last one returned.
        let to = if found.limited { within.last().copied().unwrap_or(from) } else { to };
        within.retain(|d| *d <= to);
        let next_after = self.recurrence.clone().after(self.in_zone(to)).all(2).dates.iter().map(utc).find(|d| *d > to);
        Starts { from, to, within, next_after }
    }

    /// The opening containing `at` (its start and end), if the window is open then.
    pub fn opening_at(&self, at: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let start = self.with_starts(at, |starts| starts.within.iter().rev().find(|d| **d <= at).copied())?;
        let end = start + self.length();
        (at < end).then_some((start, end))
    }

    /// The first opening that starts after `at`, if the rule has one.
    pub fn next_opening(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.with_starts(at, |starts| starts.within.iter().find(|d| **d > at).copied().or(starts.next_after))
    }
}

/// What the windows say about a step at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowVerdict {
    /// No window holds the step.
    Open,
    /// Inside deny window `window` until `until` (the latest end among the open deny windows).
    Denied { window: String, until: DateTime<Utc> },
    /// Allow windows apply and none is open; `window` opens next at `opens` (none: never again).
    Closed { window: String, opens: Option<DateTime<Utc>> },
}

/// Deny wins over allow; with no window applying, the step is open.
pub fn evaluate(windows: &[ChangeWindow], step: &Step, at: DateTime<Utc>) -> WindowVerdict {
    let applying = || windows.iter().filter(|w| w.scope.covers(step));
    let denying = applying()
        .filter(|w| w.kind == WindowKind::Deny && (!step.rollback || w.forbids_rollback))
        .filter_map(|w| w.opening_at(at).map(|(_, end)| (end, w)))
        .max_by_key(|(end, _)| *end);
    if let Some((until, window)) = denying {
        return WindowVerdict::Denied { window: window.name.clone(), until };
    }
    if step.rollback {
        return WindowVerdict::Open;
    }
    let allows: Vec<_> = applying().filter(|w| w.kind == WindowKind::Allow).collect();
    if allows.is_empty() || allows.iter().any(|w| w.opening_at(at).is_some()) {
        return WindowVerdict::Open;
    }
    let next =
        allows.iter().filter_map(|w| w.next_opening(at).map(|opens| (opens, *w))).min_by_key(|(opens, _)| *opens);
    match next {
        Some((opens, window)) => WindowVerdict::Closed { window: window.name.clone(), opens: Some(opens) },
        None => WindowVerdict::Closed { window: allows[0].name.clone(), opens: None },
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, Timelike};
    use proptest::prelude::*;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap()
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(&local(y, m, d, h, min))
    }

    fn step(ring: Ring) -> Step {
        Step { ring, site_class: SiteClass::Online, connector_type: ConnectorType::Intune, rollback: false }
    }

    #[test]
    fn refuses_bad_zones_rules_durations_and_gap_starts() {
        let new = |rule, start, zone, duration| ChangeWindow::new("w", WindowKind::Allow, rule, start, zone, duration);
        let start = local(2026, 1, 5, 22, 0);
        assert!(matches!(new("FREQ=DAILY", start, "Mars/Olympus", HOUR), Err(WindowError::UnknownTimeZone(_))));
        assert!(matches!(new("FREQ=SOMETIMES", start, "UTC", HOUR), Err(WindowError::Rule(_))));
        assert_eq!(new("FREQ=DAILY", start, "UTC", Duration::ZERO).unwrap_err(), WindowError::Duration);
        // 02:30 on 2026-03-29 does not exist in Berlin (clocks jump from 02:00 to 03:00).
        let gap = local(2026, 3, 29, 2, 30);
        assert!(matches!(new("FREQ=DAILY", gap, "Europe/Berlin", HOUR), Err(WindowError::NoSuchLocalTime(..))));
    }

    #[test]
    fn a_window_spanning_midnight_and_the_month_end_is_open_across_both() {
        let w =
            ChangeWindow::new("month-end", WindowKind::Allow, "FREQ=DAILY", local(2026, 1, 1, 23, 0), "UTC", 2 * HOUR)
                .unwrap();
        assert_eq!(w.opening_at(utc(2026, 2, 1, 0, 30)), Some((utc(2026, 1, 31, 23, 0), utc(2026, 2, 1, 1, 0))));
        assert_eq!(w.opening_at(utc(2026, 2, 1, 1, 0)), None, "the end is not inside");
        assert_eq!(w.next_opening(utc(2026, 2, 1, 1, 0)), Some(utc(2026, 2, 1, 23, 0)));
    }

    #[test]
    fn deny_wins_over_allow_and_rollbacks_pass_unless_forbidden() {
        let allow =
            ChangeWindow::new("nights", WindowKind::Allow, "FREQ=DAILY", local(2026, 1, 1, 20, 0), "UTC", 8 * HOUR)
                .unwrap();
        let mut deny = ChangeWindow::new(
            "quarter-close",
            WindowKind::Deny,
            "FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=31",
            local(2026, 3, 31, 0, 0),
            "UTC",
            24 * HOUR,
        )
        .unwrap();
        deny.scope.rings = vec![Ring::Global];
        let windows = [allow, deny.clone()];
        let at = utc(2026, 3, 31, 21, 0);
        let denied = WindowVerdict::Denied { window: "quarter-close".into(), until: utc(2026, 4, 1, 0, 0) };
        assert_eq!(evaluate(&windows, &step(Ring::Global), at), denied);
        assert_eq!(evaluate(&windows, &step(Ring::Pilot), at), WindowVerdict::Open, "outside the deny scope");
        let midday = utc(2026, 4, 2, 12, 0);
        let closed = WindowVerdict::Closed { window: "nights".into(), opens: Some(utc(2026, 4, 2, 20, 0)) };
        assert_eq!(evaluate(&windows, &step(Ring::Pilot), midday), closed);
        let rollback = Step { rollback: true, ..step(Ring::Global) };
        assert_eq!(evaluate(&windows, &rollback, at), WindowVerdict::Open);
        assert_eq!(evaluate(&windows, &rollback, midday), WindowVerdict::Open, "allow windows do not hold rollbacks");
        deny.forbids_rollback = true;
        assert_eq!(evaluate(&[deny], &rollback, at), denied);
    }

    #[test]
    fn a_start_in_the_spring_gap_moves_an_hour_on_the_clock_and_the_repeated_hour_opens_once() {
        let w =
            ChangeWindow::new("early", WindowKind::Deny, "FREQ=DAILY", local(2025, 1, 1, 2, 30), "Europe/Berlin", HOUR)
                .unwrap();
        // 2025-03-30: clocks jump 02:00 → 03:00 CEST; the opening keeps the elapsed time (01:30 UTC = 03:30 CEST).
        assert_eq!(w.next_opening(utc(2025, 3, 29, 12, 0)), Some(utc(2025, 3, 30, 1, 30)));
        assert_eq!(w.next_opening(utc(2025, 3, 30, 1, 30)), Some(utc(2025, 3, 31, 0, 30)));
        // 2025-10-26: 02:30 happens twice; the first (CEST, 00:30 UTC) opens, the second does not.
        assert_eq!(w.next_opening(utc(2025, 10, 25, 12, 0)), Some(utc(2025, 10, 26, 0, 30)));
        assert_eq!(w.next_opening(utc(2025, 10, 26, 0, 30)), Some(utc(2025, 10, 27, 1, 30)));
        assert!(w.opening_at(utc(2025, 10, 26, 1, 40)).is_none(), "the repeated hour is not a second opening");
    }

    const ZONES: [&str; 5] =
        ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "America/Santiago"];

    proptest! {
        /// A nightly window keeps its local wall-clock start through every
        /// daylight-saving change, in zones that move either way or not at all.
        #[test]
        fn nightly_windows_keep_their_local_start_across_dst(zone in proptest::sample::select(&ZONES[..]), day in 0i64..800, minute in 0i64..1440) {
            let w = ChangeWindow::new("nightly", WindowKind::Allow, "FREQ=DAILY", local(2025, 1, 1, 22, 0), zone, 4 * HOUR).unwrap();
            let at = utc(2025, 1, 2, 0, 0) + chrono::Duration::days(day) + chrono::Duration::minutes(minute);
            let tz: chrono_tz::Tz = zone.parse().unwrap();
            let next = w.next_opening(at).expect("a daily rule never ends");
            prop_assert_eq!(next.with_timezone(&tz).hour(), 22);
            prop_assert!(next > at && next - at <= chrono::Duration::hours(26));
            // Open exactly when the last start was less than four hours ago.
            let opening = w.opening_at(at);
            let local = at.with_timezone(&tz);
            let last_start = (0..=1).map(|back| local.date_naive() - chrono::Days::new(back))
                .filter_map(|d| tz.from_local_datetime(&d.and_hms_opt(22, 0, 0).unwrap()).earliest())
                .map(|s| s.with_timezone(&Utc))
                .filter(|s| *s <= at)
                .max()
                .unwrap();
            prop_assert_eq!(opening.is_some(), at < last_start + chrono::Duration::hours(4), "at {} last start {}", at, last_start);
            if let Some((start, end)) = opening {
                prop_assert!(start <= at && at < end && end - start == chrono::Duration::hours(4));
            }
        }

        /// The starts a window keeps answer as a fresh window's do, whatever
        /// order the instants come in (later, earlier, past the range kept).
        #[test]
        fn kept_starts_answer_as_a_fresh_window_does(zone in proptest::sample::select(&ZONES[..]), minutes in proptest::collection::vec(0i64..800 * 1440, 1..24)) {
            let make = || ChangeWindow::new("w", WindowKind::Deny, "FREQ=WEEKLY;BYDAY=MO,FR", local(2025, 1, 1, 22, 0), zone, 30 * HOUR).unwrap();
            let kept = make();
            for minute in minutes {
                let at = utc(2025, 1, 2, 0, 0) + chrono::Duration::minutes(minute);
                let fresh = make();
                prop_assert_eq!(kept.opening_at(at), fresh.opening_at(at), "open at {}", at);
                prop_assert_eq!(kept.next_opening(at), fresh.next_opening(at), "next after {}", at);
            }
        }

        /// A window starting at 02:30 local opens once a day: at the first
        /// 02:30 of the autumn day that has two, and an hour later on the clock
        /// (the same elapsed time) on the spring day that has none.
        #[test]
        fn starts_in_gaps_and_repeated_hours_open_at_most_once_a_day(zone in proptest::sample::select(&ZONES[..3]), day in 0i64..730) {
            let w = ChangeWindow::new("early", WindowKind::Deny, "FREQ=DAILY", local(2025, 1, 1, 2, 30), zone, HOUR / 2).unwrap();
            let at = utc(2025, 1, 2, 0, 0) + chrono::Duration::days(day);
            let first = w.next_opening(at).expect("daily");
            let second = w.next_opening(first).expect("daily");
            prop_assert!(second - first >= chrono::Duration::hours(22), "{} then {}", first, second);
            let tz: chrono_tz::Tz = zone.parse().unwrap();
            let wall = first.with_timezone(&tz);
            let intended = wall.date_naive().and_hms_opt(2, 30, 0).unwrap();
            match tz.from_local_datetime(&intended).earliest() {
                Some(expected) => prop_assert_eq!(first, expected.with_timezone(&Utc)),
                None => prop_assert_eq!((wall.hour(), wall.minute()), (3, 30), "in the gap: {}", wall),
            }
        }
    }
}
