//! Change calendar use-cases: windows (create, read, replace, delete,
//! conditional on etags), the global freeze (set with a reason and an
//! expiry, lift, expire by itself), their audit log, and the holds other
//! use-cases apply before dispatching work.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{AppError, AppResult, check_etag, retry_on_conflict};
use crate::domain::calendar::{Calendar, CalendarChange, CalendarChangeKind, Freeze, MAX_FREEZE, WindowRecord};
use crate::domain::window::ChangeWindow;
use crate::domain::{ChangeContext, Deployment, Ring};
use crate::metrics::DeploymentMetrics;
use crate::store::{Page, Store};

/// Most windows the calendar holds: each Get evaluates the ones that apply.
pub const MAX_WINDOWS: u64 = 200;

/// Change calendar use-cases.
#[derive(Clone)]
pub struct ChangeCalendar {
    store: Arc<Store>,
    metrics: DeploymentMetrics,
}

impl ChangeCalendar {
    pub fn new(store: Arc<Store>, metrics: DeploymentMetrics) -> ChangeCalendar {
        ChangeCalendar { store, metrics }
    }

    /// # Errors
    /// Database failures.
    pub async fn windows(&self) -> AppResult<Vec<WindowRecord>> {
        Ok(self.store.list_windows().await?)
    }

    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn window(&self, name: &str) -> AppResult<WindowRecord> {
        Ok(self.store.get_window(name).await?)
    }

    /// # Errors
    /// ALREADY_EXISTS for a taken name; FAILED_PRECONDITION past [`MAX_WINDOWS`]; database failures.
    pub async fn create_window(&self, window: &ChangeWindow, ctx: &ChangeContext) -> AppResult<WindowRecord> {
        let record = self.store.create_window(window, MAX_WINDOWS, ctx).await?;
        tracing::info!(window = %window.name, kind = ?window.kind, actor = %ctx.actor, "change window created");
        Ok(record)
    }

    /// Replaces window `name` with `window`, conditional on `etag` when
    /// given; without one a lost race is retried.
    ///
    /// # Errors
    /// NOT_FOUND; ABORTED for a stale etag; database failures.
    pub async fn update_window(
        &self,
        window: &ChangeWindow,
        etag: Option<i64>,
        ctx: &ChangeContext,
    ) -> AppResult<WindowRecord> {
        let saved = retry_on_conflict(etag.is_none(), || async {
            let before = self.store.get_window(&window.name).await?;
            check_etag(etag, before.revision, format_args!("change window {:?}", window.name))?;
            Ok(self.store.update_window(&before, window, ctx).await?)
        })
        .await?;
        tracing::info!(window = %window.name, actor = %ctx.actor, "change window updated");
        Ok(saved)
    }

    /// # Errors
    /// NOT_FOUND; ABORTED for a stale etag; database failures.
    pub async fn delete_window(&self, name: &str, etag: Option<i64>, ctx: &ChangeContext) -> AppResult<()> {
        retry_on_conflict(etag.is_none(), || async {
            let record = self.store.get_window(name).await?;
            check_etag(etag, record.revision, format_args!("change window {name:?}"))?;
            Ok(self.store.delete_window(&record, ctx).await?)
        })
        .await?;
        tracing::info!(window = %name, actor = %ctx.actor, "change window deleted");
        Ok(())
    }

    /// The freeze as stored, when one is set and has not expired at `now`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn freeze(&self, now: DateTime<Utc>) -> AppResult<Option<Freeze>> {
        Ok(self.store.get_freeze().await?.filter(|freeze| freeze.holds_at(now)))
    }

    /// Sets the global freeze until `expires_at` with `ctx.reason`,
    /// replacing one that holds.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for an expiry not in the future or beyond [`MAX_FREEZE`]; database failures.
    pub async fn set_freeze(&self, expires_at: DateTime<Utc>, ctx: &ChangeContext) -> AppResult<Freeze> {
        let longest = ctx.now + chrono::Duration::from_std(MAX_FREEZE).expect("90 days fit");
        if expires_at <= ctx.now || expires_at > longest {
            return Err(AppError::invalid(
                "expire_time",
                format!("must be after now and at most 90 days ahead (got {})", expires_at.to_rfc3339()),
            ));
        }
        let freeze = Freeze { reason: ctx.reason.clone(), set_by: ctx.actor.clone(), set_at: ctx.now, expires_at };
        self.store.set_freeze(&freeze, ctx).await?;
        self.metrics.calendar_changed();
        tracing::warn!(reason = %freeze.reason, until = %expires_at, actor = %ctx.actor, "change freeze set: no promotion or new dispatch anywhere");
        Ok(freeze)
    }

    /// Lifts the freeze now.
    ///
    /// # Errors
    /// FAILED_PRECONDITION when no freeze holds; database failures.
    pub async fn lift_freeze(&self, ctx: &ChangeContext) -> AppResult<Freeze> {
        let lifted = self.store.remove_freeze(CalendarChangeKind::FreezeLifted, ctx).await?;
        // An expired freeze not yet removed: lifting it changes nothing anyone sees.
        let Some(freeze) = lifted.filter(|freeze| freeze.holds_at(ctx.now)) else {
            return Err(AppError::FailedPrecondition("no change freeze holds: there is nothing to lift".into()));
        };
        self.metrics.calendar_changed();
        tracing::warn!(reason = %freeze.reason, actor = %ctx.actor, "change freeze lifted");
        Ok(freeze)
    }

    /// Removes a freeze that has expired at `ctx.now`, recording it as
    /// expired; whether there was one.
    ///
    /// # Errors
    /// Database failures.
    pub async fn expire_freeze(&self, ctx: &ChangeContext) -> AppResult<bool> {
        let expired = self.store.remove_freeze(CalendarChangeKind::FreezeExpired, ctx).await?;
        if let Some(freeze) = &expired {
            self.metrics.calendar_changed();
            tracing::warn!(reason = %freeze.reason, expired_at = %freeze.expires_at, "change freeze expired");
        }
        Ok(expired.is_some())
    }

    /// The change log after sequence `after`, of one subject or all.
    ///
    /// # Errors
    /// Database failures.
    pub async fn changes(
        &self,
        subject: Option<&str>,
        after: Option<i64>,
        limit: u64,
    ) -> AppResult<Page<CalendarChange>> {
        Ok(self.store.list_calendar_changes(subject, after, limit).await?)
    }
}

/// FAILED_PRECONDITION when `calendar` holds dispatching `deployment`'s work
/// to `ring` (its removal, for a `rollback`), naming the hold and its end.
///
/// # Errors
/// The hold.
pub fn check_hold(
    calendar: &Calendar,
    deployment: &Deployment,
    ring: Ring,
    rollback: bool,
    now: DateTime<Utc>,
    what: &str,
) -> AppResult<()> {
    match calendar.hold_for(deployment, ring, rollback, now) {
        None => Ok(()),
        Some(hold) => {
            Err(AppError::FailedPrecondition(format!("{what} is held by the change calendar: {}", hold.explain())))
        }
    }
}
