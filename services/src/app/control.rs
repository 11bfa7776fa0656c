//! Dual control ("four eyes") use-cases: a change that weakens a safety
//! control is stored as a proposal instead of applied, and takes effect only
//! when another admin approves it (both identities stay in the audit
//! trail); its proposer may withdraw it, any admin may reject it.

use std::sync::Arc;

use uuid::Uuid;

use super::{AppError, AppResult};
use crate::domain::ChangeContext;
use crate::domain::control::{ControlChange, ControlError, ControlState, ControlSubject, Decision};
use crate::metrics::DeploymentMetrics;
use crate::store::{Page, Store, StoreError};

/// What became of a requested change: applied, or (weakening a control)
/// proposed, with the current state unchanged until a second admin approves.
#[derive(Debug, Clone)]
pub enum Guarded<T> {
    Applied(T),
    Proposed { current: T, change: Box<ControlChange> },
}

/// Control change use-cases.
#[derive(Clone)]
pub struct ControlChanges {
    store: Arc<Store>,
    metrics: DeploymentMetrics,
}

impl From<ControlError> for AppError {
    fn from(err: ControlError) -> Self {
        match err {
            ControlError::OwnProposal(_) => AppError::PermissionDenied(err.to_string()),
            ControlError::NotPending(_) => AppError::FailedPrecondition(err.to_string()),
        }
    }
}

impl ControlChanges {
    pub fn new(store: Arc<Store>, metrics: DeploymentMetrics) -> ControlChanges {
        ControlChanges { store, metrics }
    }

    /// Stores `subject`, which weakens what `weakenings` say, as a proposal
    /// of the caller in `ctx`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn propose(
        &self,
        subject: ControlSubject,
        weakenings: Vec<String>,
        ctx: &ChangeContext,
    ) -> AppResult<Box<ControlChange>> {
        let change = ControlChange::propose(
            Uuid::now_v7(),
            subject,
            weakenings,
            &ctx.actor,
            &ctx.reason,
            &ctx.correlation_id,
            ctx.now,
        );
        self.store.propose_control_change(&change).await?;
        tracing::warn!(
            id = %change.id, proposed_by = %change.proposed_by, weakenings = ?change.weakenings,
            "a change weakening a safety control waits for a second admin"
        );
        Ok(Box::new(change))
    }

    /// One change, its state as of `ctx.now`.
    ///
    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn get(&self, id: Uuid, now: chrono::DateTime<chrono::Utc>) -> AppResult<ControlChange> {
        let mut change = self.store.get_control_change(id).await?;
        change.state = change.state_at(now);
        Ok(change)
    }

    /// Changes in proposal order after sequence `after`, only those in
    /// `state` (as of `now`) when given.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list(
        &self,
        state: Option<ControlState>,
        now: chrono::DateTime<chrono::Utc>,
        after: Option<i64>,
        limit: u64,
    ) -> AppResult<Page<ControlChange>> {
        let mut page = self.store.list_control_changes(state, now, after, limit).await?;
        for change in &mut page.items {
            change.state = change.state_at(now);
        }
        Ok(page)
    }

    /// Approves or rejects change `id` as the caller in `ctx`; an approved
    /// change is applied at once, recorded as its proposer's change with
    /// the caller as approver.
    ///
    /// # Errors
    /// NOT_FOUND; PERMISSION_DENIED for the proposer approving; FAILED_PRECONDITION
    /// when the change is not pending or is superseded; ABORTED when another
    /// decision came first; database failures.
    pub async fn decide(&self, id: Uuid, decision: Decision, ctx: &ChangeContext) -> AppResult<ControlChange> {
        let mut change = self.store.get_control_change(id).await?;
        change.decide(decision, &ctx.actor, &ctx.reason, ctx.now)?;
        let applied = ChangeContext {
            actor: change.proposed_by.clone(),
            reason: change.reason.clone(),
            correlation_id: change.correlation_id.clone(),
            now: ctx.now,
            fence: None,
        };
        match self.store.decide_control_change(&change, &applied).await {
            Ok(()) => {}
            Err(StoreError::ControlChangeSuperseded(id)) => {
                self.store.supersede_control_change(id, ctx.now).await?;
                return Err(StoreError::ControlChangeSuperseded(id).into());
            }
            Err(err) => return Err(err.into()),
        }
        if decision == Decision::Approve {
            self.metrics.policies_changed();
        }
        tracing::info!(
            id = %change.id, decision = ?decision, proposed_by = %change.proposed_by, decided_by = %ctx.actor,
            "control change decided"
        );
        Ok(change)
    }
}
