//! The circuit breaker of DESIGN §2 as a pure state machine with an injected
//! clock: CLOSED → OPEN after `fail_max` consecutive failures; OPEN rejects
//! calls until `reset_timeout` has passed; then HALF_OPEN lets one trial call
//! through: success closes, failure re-opens. A trial that never reports
//! back (its caller died: across replicas that happens) frees its slot after
//! `reset_timeout`. The state serializes (settings aside) so that replicas
//! can share it.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Breaker settings; DESIGN's defaults are 5 failures and 60 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BreakerConfig {
    pub fail_max: u32,
    pub reset_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { fail_max: 5, reset_timeout: Duration::from_secs(60) }
    }
}

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
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `circuit_breaker_state` gauge DESIGN §4 assigns.
    pub fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// A call the breaker refused: it is open until `retry_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub retry_at: DateTime<Utc>,
}

/// A breaker; its settings are not serialized (they come from the
/// connector's definition: [`CircuitBreaker::reconfigure`] after reading one).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CircuitBreaker {
    #[serde(skip)]
    config: BreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<DateTime<Utc>>,
    /// HALF_OPEN admits one trial at a time: since when one is in flight.
    trial_since: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker {
            config,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            trial_since: None,
            last_error: None,
        }
    }

    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// Keeps the state, applies new settings (an operator edited the connector).
    pub fn reconfigure(&mut self, config: BreakerConfig) {
        self.config = config;
    }

    /// The state as of `now`: an OPEN breaker whose timeout has passed reads HALF_OPEN.
    pub fn state(&self, now: DateTime<Utc>) -> BreakerState {
        match self.state {
            BreakerState::Open if self.retry_at().is_some_and(|at| now >= at) => BreakerState::HalfOpen,
            state => state,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn opened_at(&self) -> Option<DateTime<Utc>> {
        self.opened_at
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When an OPEN breaker lets a trial through.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        let timeout = chrono::Duration::from_std(self.config.reset_timeout).unwrap_or(chrono::Duration::MAX);
        self.opened_at.filter(|_| self.state == BreakerState::Open).map(|at| at + timeout)
    }

    /// Asks to make a call at `now`.
    ///
    /// # Errors
    /// [`Rejected`] while OPEN, or while a HALF_OPEN trial is in flight.
    pub fn acquire(&mut self, now: DateTime<Utc>) -> Result<(), Rejected> {
        match self.state(now) {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => Err(Rejected { retry_at: self.retry_at().unwrap_or(now) }),
            BreakerState::HalfOpen => {
                let timeout = chrono::Duration::from_std(self.config.reset_timeout).unwrap_or(chrono::Duration::MAX);
                if let Some(since) = self.trial_since
                    && now < since + timeout
                {
                    return Err(Rejected { retry_at: since + timeout });
                }
                self.state = BreakerState::HalfOpen;
                self.trial_since = Some(now);
                Ok(())
            }
        }
    }

    /// The call succeeded: the breaker closes and forgets past failures.
    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive_failures = 0;
        self.opened_at = None;
        self.trial_since = None;
    }

    /// The call failed in a way that says the connector is unwell.
    pub fn on_failure(&mut self, now: DateTime<Utc>, error: impl Into<String>) {
        self.last_error = Some(error.into());
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let trial_failed = self.state == BreakerState::HalfOpen;
        self.trial_since = None;
        if trial_failed || self.consecutive_failures >= self.config.fail_max.max(1) {
            self.state = BreakerState::Open;
            self.opened_at = Some(now);
        }
    }

    /// The call ended without saying anything about the connector's health
    /// (e.g. it rejected bad input): a HALF_OPEN trial slot is released.
    pub fn on_neutral(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.on_success();
        }
    }

    /// Operator reset: CLOSED with no failures.
    pub fn reset(&mut self) {
        self.on_success();
        self.last_error = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig::default())
    }

    #[test]
    fn opens_after_five_consecutive_failures_and_fails_fast() {
        let mut b = breaker();
        for i in 0..4 {
            b.acquire(t(i)).unwrap();
            b.on_failure(t(i), "boom");
            assert_eq!(b.state(t(i)), BreakerState::Closed);
        }
        b.acquire(t(4)).unwrap();
        b.on_failure(t(4), "boom");
        assert_eq!(b.state(t(4)), BreakerState::Open);
        assert_eq!(b.acquire(t(30)), Err(Rejected { retry_at: t(64) }));
        assert_eq!(b.acquire(t(63)), Err(Rejected { retry_at: t(64) }));
        assert_eq!(b.last_error(), Some("boom"));
    }

    #[test]
    fn a_success_in_between_starts_the_count_again() {
        let mut b = breaker();
        for i in 0..4 {
            b.on_failure(t(i), "x");
        }
        b.on_success();
        for i in 0..4 {
            b.on_failure(t(10 + i), "x");
        }
        assert_eq!(b.state(t(20)), BreakerState::Closed);
    }

    #[test]
    fn half_open_lets_one_trial_through_then_closes_or_reopens() {
        let mut b = breaker();
        for i in 0..5 {
            b.on_failure(t(i), "x");
        }
        assert_eq!(b.state(t(64)), BreakerState::HalfOpen);
        b.acquire(t(64)).unwrap();
        assert!(b.acquire(t(64)).is_err(), "one trial at a time");
        b.on_failure(t(65), "still down");
        assert_eq!(b.state(t(65)), BreakerState::Open);
        assert_eq!(b.retry_at(), Some(t(125)));
        b.acquire(t(125)).unwrap();
        b.on_success();
        assert_eq!(b.state(t(125)), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn a_trial_that_never_reports_frees_its_slot_after_the_timeout() {
        let mut b = breaker();
        for i in 0..5 {
            b.on_failure(t(i), "x");
        }
        b.acquire(t(64)).unwrap();
        assert_eq!(b.acquire(t(100)), Err(Rejected { retry_at: t(124) }));
        b.acquire(t(124)).expect("the first trial's caller is presumed gone");
    }

    #[test]
    fn survives_serialization_but_for_its_settings() {
        let mut b = CircuitBreaker::new(BreakerConfig { fail_max: 2, reset_timeout: Duration::from_secs(5) });
        b.on_failure(t(0), "x");
        b.on_failure(t(1), "y");
        let json = serde_json::to_string(&b).unwrap();
        let mut read: CircuitBreaker = serde_json::from_str(&json).unwrap();
        assert_eq!(read.config(), BreakerConfig::default());
        read.reconfigure(b.config());
        assert_eq!(read, b);
    }

    #[test]
    fn reset_closes_at_once() {
        let mut b = breaker();
        for i in 0..5 {
            b.on_failure(t(i), "x");
        }
        b.reset();
        assert_eq!(b.state(t(5)), BreakerState::Closed);
        b.acquire(t(5)).unwrap();
        assert_eq!(b.last_error(), None);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Call { advance: i64, ok: bool },
        Neutral { advance: i64 },
        Reset,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0i64..40, any::<bool>()).prop_map(|(advance, ok)| Step::Call { advance, ok }),
            1 => (0i64..40).prop_map(|advance| Step::Neutral { advance }),
            1 => Just(Step::Reset),
        ]
    }

    proptest! {
        /// Against a simple model: calls pass exactly when the breaker is
        /// closed or its timeout has run out; it opens exactly at fail_max
        /// consecutive failures or on a failed trial.
        #[test]
        fn follows_the_model(steps in proptest::collection::vec(step(), 0..80), fail_max in 1u32..6, reset in 1i64..90) {
            let mut b = CircuitBreaker::new(BreakerConfig { fail_max, reset_timeout: Duration::from_secs(reset as u64) });
            let mut now = 0i64;
            let (mut failures, mut open_since): (u32, Option<i64>) = (0, None);
            for step in steps {
                match step {
                    Step::Reset => {
                        b.reset();
                        failures = 0;
                        open_since = None;
                    }
                    Step::Neutral { advance } | Step::Call { advance, .. } => {
                        now += advance;
                        let expected_pass = open_since.is_none_or(|since| now >= since + reset);
                        let admitted = b.acquire(t(now)).is_ok();
                        prop_assert_eq!(admitted, expected_pass);
                        if !admitted {
                            continue;
                        }
                        let trial = open_since.is_some();
                        match step {
                            Step::Call { ok: true, .. } => {
                                b.on_success();
                                failures = 0;
                                open_since = None;
                            }
                            Step::Call { ok: false, .. } => {
                                b.on_failure(t(now), "x");
                                failures += 1;
                                if trial || failures >= fail_max {
                                    open_since = Some(now);
                                }
                            }
                            _ => {
                                b.on_neutral();
                                if trial {
                                    failures = 0;
                                    open_since = None;
                                }
                            }
                        }
                        let expected_state = if open_since.is_some() { BreakerState::Open } else { BreakerState::Closed };
                        prop_assert_eq!(b.state(t(now)), expected_state);
                    }
                }
            }
        }
    }
}
