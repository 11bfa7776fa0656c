//! The time seen by every decision — breakers, the rollout controller,
//! change contexts, health probes: the system clock in production, one a
//! test moves by hand.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use crate::domain::ChangeContext;

/// A source of the current time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock: the one place the time is read (clippy's
    /// `disallowed-methods` keeps `Utc::now` out of everything else).
    #[allow(clippy::disallowed_methods)]
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    /// A clock that reads `source`.
    pub fn from_fn(source: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(source))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }

    /// The context of a change made now by `actor`, for `reason`; a fresh
    /// correlation id unless the call that causes it carries one.
    pub fn context(&self, actor: String, reason: String, correlation_id: Option<String>) -> ChangeContext {
        ChangeContext {
            actor,
            reason,
            correlation_id: correlation_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            now: stored_time(self.now()),
            fence: None,
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// `at` at the precision the database keeps (PostgreSQL: microseconds), so
/// what a call returns equals what a later read returns.
pub fn stored_time(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}
