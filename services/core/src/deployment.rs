//! The deployment aggregate: its fields, per-ring progress, and the mutations
//! the API offers (approve, reject, start, report outcome, complete, fail).
//! Each mutation checks the rules, changes the aggregate and returns the audit
//! events to append; persisting both atomically is the store's job.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::gate::{GateEvaluation, RingPolicy};
use super::lifecycle::{self, DeploymentStatus, TransitionError};
use super::ring::Ring;
use super::risk::{Assessment, Evidence};

/// The endpoint-management platform a connector talks to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ConnectorType {
    Intune,
    Jamf,
    Sccm,
    Landscape,
    Ansible,
}

/// How well connected the targeted endpoints are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum SiteClass {
    Online,
    Intermittent,
    AirGapped,
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum EventKind {
    Created,
    StatusChanged,
    OutcomeReported,
    RingPromoted,
    Dispatched,
    Paused,
    Resumed,
    Stalled,
    /// An operator replaced a ring's reported counts (audited, with before and after).
    OutcomeCorrected,
    /// The connector took work handed over earlier.
    Delivered,
    /// Delivering handed-over work failed (retried), or the connector refused it.
    DeliveryFailed,
    /// A promotion the gate or the change calendar held, made anyway: requested
    /// by one identity, approved by another (the reason names both and what was overridden).
    BreakGlass,
}

/// Who is changing a deployment, why, under which correlation id, and when.
#[derive(Debug, Clone)]
pub struct ChangeContext {
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    pub now: DateTime<Utc>,
    /// For a background duty's change: the lease it holds, checked in the
    /// change's transaction so that a former holder cannot act.
    pub fence: Option<Fence>,
}

/// A lease held, as the fencing token of its acquisition: tokens grow with
/// every acquisition, so a change carrying an older one comes from a holder
/// that lost the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: &'static str,
    pub token: i64,
}

/// An audit event about to be appended; the store assigns its sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub deployment_id: Uuid,
    pub kind: EventKind,
    pub from_status: Option<DeploymentStatus>,
    pub to_status: DeploymentStatus,
    pub ring: Ring,
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    pub at: DateTime<Utc>,
}

/// Progress of a deployment in one ring. Counts only grow.
#[derive(Debug, Clone, PartialEq)]
pub struct RingProgress {
    pub ring: Ring,
    pub connector_object_id: Option<String>,
    pub success_count: u64,
    pub failure_count: u64,
    pub started_at: DateTime<Utc>,
    pub promoted_at: Option<DateTime<Utc>>,
    /// When the ring first met its policy's success rate with the minimum sample.
    pub compliant_at: Option<DateTime<Utc>>,
    /// When a reporter confirmed the rollback was exercised in this ring.
    pub rollback_validated_at: Option<DateTime<Utc>>,
    /// When outcome counts last changed (the controller's stall clock).
    pub last_reported_at: Option<DateTime<Utc>>,
    /// Where the latest work handed to the connector for this ring stands.
    pub delivery: Delivery,
    /// Why the last delivery attempt failed (cleared once delivered).
    pub delivery_error: Option<String>,
    /// Devices the connector says the ring has: reports may not exceed it.
    pub expected_devices: Option<u64>,
}

/// Where work handed to a connector stands. The decision to hand it over is
/// committed first (with an outbox row); delivery follows, is retried while
/// the connector fails transiently, and ends delivered or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Delivery {
    Pending,
    Delivered,
    Refused,
}

impl RingProgress {
    pub fn started(ring: Ring, at: DateTime<Utc>) -> RingProgress {
        RingProgress {
            ring,
            connector_object_id: None,
            success_count: 0,
            failure_count: 0,
            started_at: at,
            promoted_at: None,
            compliant_at: None,
            rollback_validated_at: None,
            last_reported_at: None,
            delivery: Delivery::Pending,
            delivery_error: None,
            expected_devices: None,
        }
    }

    pub fn reported(&self) -> u64 {
        self.success_count.saturating_add(self.failure_count)
    }

    /// Time from the ring's start to compliance, once reached.
    pub fn time_to_compliance(&self) -> Option<chrono::Duration> {
        self.compliant_at.map(|at| at - self.started_at)
    }

    /// success / (success + failure); 0 when nothing was reported.
    pub fn success_rate(&self) -> f64 {
        match self.reported() {
            0 => 0.0,
            total => self.success_count as f64 / total as f64,
        }
    }
}

/// Work handed to a connector: which connector, and (once delivered) the platform's object id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub connector: String,
    pub object_id: Option<String>,
    /// How many devices the platform says the ring has, when it says.
    pub device_count: Option<u64>,
}

/// Most devices one ring can report: more endpoints than any estate has,
/// so a larger count comes from a broken reporter, not a big fleet.
pub const MAX_RING_DEVICES: u64 = 10_000_000;

/// A cumulative outcome report for one ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub ring: Ring,
    pub success_count: u64,
    pub failure_count: u64,
    /// The reporter exercised the rollback in this ring.
    pub rollback_validated: bool,
}

/// The validated content of a CreateDeployment call.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    pub app_name: String,
    pub version: String,
    pub connector_type: ConnectorType,
    pub connector_name: Option<String>,
    pub target_ring: Ring,
    pub risk_score: u8,
    pub evidence_pack_id: Uuid,
    pub submitter: String,
    pub site_class: SiteClass,
    pub evidence: Evidence,
    /// The server's score; when absent, `risk_score` with DESIGN's fixed threshold of 50.
    pub assessment: Option<Assessment>,
}

/// A deployment intent and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub id: Uuid,
    pub app_name: String,
    pub version: String,
    pub connector_type: ConnectorType,
    pub connector_name: Option<String>,
    pub current_ring: Ring,
    pub target_ring: Ring,
    pub risk_score: u8,
    pub requires_cab_approval: bool,
    pub evidence_pack_id: Uuid,
    pub submitter: String,
    pub correlation_id: String,
    pub status: DeploymentStatus,
    pub site_class: SiteClass,
    pub cab_approver: Option<String>,
    pub status_reason: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deploy_started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency revision; the API's etag. Bumped by the store on every save.
    pub revision: i64,
    pub evidence: Evidence,
    /// How `risk_score` was computed.
    pub risk: Option<Assessment>,
    /// Paused deployments still record outcomes but the controller leaves them alone.
    pub paused: bool,
    /// Set when the controller found no new outcomes for the ring's stall timeout.
    pub stalled_since: Option<DateTime<Utc>>,
    /// Progress of every ring entered, in ring order.
    pub rings: Vec<RingProgress>,
}

/// A mutation the deployment's rules refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeploymentError {
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("the CAB approver must not be the submitter ({submitter}): separation of duties")]
    SelfApproval { submitter: String },
    #[error("outcomes can only be reported while the deployment is DEPLOYING (it is {status})")]
    NotDeploying { status: DeploymentStatus },
    #[error("ring {ring} has not been started; the deployment is in {current}")]
    RingNotStarted { ring: Ring, current: Ring },
    #[error(
        "ring {ring} was left for {current}: outcomes are reported for the current ring only, past figures stay as recorded"
    )]
    RingLeft { ring: Ring, current: Ring },
    #[error("ring {ring} would have {reported} devices reported, more than the {limit} it has; correct the reporter")]
    TooManyDevices { ring: Ring, reported: u64, limit: u64 },
    #[error(
        "counts only grow: ring {ring} already has {field} = {current}, the report says {reported}; a wrong figure is fixed with CorrectRingOutcome"
    )]
    CountDecreased { ring: Ring, field: &'static str, current: u64, reported: u64 },
    #[error("the deployment is in {current}, its target ring is {target}: promote it before completing")]
    TargetRingNotReached { current: Ring, target: Ring },
    #[error("the deployment is {status}: only live deployments can be paused or resumed")]
    NotLive { status: DeploymentStatus },
    #[error("the deployment is already {0}")]
    AlreadyInState(&'static str),
    #[error("only DEPLOYING deployments can be promoted (it is {status})")]
    NotPromotable { status: DeploymentStatus },
    #[error("the gate to leave {ring} did not pass: {failed}")]
    GateNotPassed { ring: Ring, failed: String },
    #[error("the deployment is in {current}, not {expected}: another promotion or rollback changed it")]
    RingMoved { expected: Ring, current: Ring },
    #[error("break-glass needs two identities: {0} requested it, so another must approve it")]
    BreakGlassAlone(String),
}

impl Deployment {
    /// A new deployment: PENDING, then straight on to AWAITING_CAB or APPROVED
    /// by its risk score. Returns both events.
    pub fn create(id: Uuid, new: NewDeployment, ctx: &ChangeContext) -> (Deployment, Vec<NewEvent>) {
        let (risk_score, requires_cab_approval, threshold) = match &new.assessment {
            Some(a) => (a.score, a.requires_cab(), a.threshold),
            None => (new.risk_score, lifecycle::requires_cab_approval(new.risk_score), lifecycle::CAB_RISK_THRESHOLD),
        };
        let mut deployment = Deployment {
            id,
            requires_cab_approval,
            app_name: new.app_name,
            version: new.version,
            connector_type: new.connector_type,
            connector_name: new.connector_name,
            current_ring: Ring::Lab,
            target_ring: new.target_ring,
            risk_score,
            evidence: new.evidence,
            risk: new.assessment,
            evidence_pack_id: new.evidence_pack_id,
            submitter: new.submitter,
            correlation_id: ctx.correlation_id.clone(),
            status: DeploymentStatus::Pending,
            site_class: new.site_class,
            cab_approver: None,
            status_reason: String::new(),
            created_at: ctx.now,
            updated_at: ctx.now,
            deploy_started_at: None,
            ended_at: None,
            revision: 0,
            paused: false,
            stalled_since: None,
            rings: Vec::new(),
        };
        let created = deployment.event(EventKind::Created, None, ctx);
        let (next, reason) = if deployment.requires_cab_approval {
            (DeploymentStatus::AwaitingCab, format!("risk score {risk_score} > {threshold}: CAB approval required"))
        } else {
            (DeploymentStatus::Approved, format!("risk score {risk_score} <= {threshold}: approved without CAB"))
        };
        let system = ChangeContext { actor: "system".into(), reason, ..ctx.clone() };
        let moved = deployment.move_to(next, &system).expect("PENDING always leaves for AWAITING_CAB or APPROVED");
        (deployment, vec![created, moved])
    }

    /// CAB approval: AWAITING_CAB → APPROVED, by someone other than the submitter.
    ///
    /// # Errors
    /// Wrong status or self-approval.
    pub fn approve(&mut self, ctx: &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError> {
        self.cab_decision(DeploymentStatus::Approved, ctx)
    }

    /// CAB rejection: AWAITING_CAB → REJECTED, by someone other than the submitter.
    ///
    /// # Errors
    /// Wrong status or self-rejection.
    pub fn reject(&mut self, ctx: &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError> {
        self.cab_decision(DeploymentStatus::Rejected, ctx)
    }

    fn cab_decision(&mut self, to: DeploymentStatus, ctx: &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError> {
        self.status.check_transition(to)?;
        if self.status == DeploymentStatus::AwaitingCab && ctx.actor == self.submitter {
            return Err(DeploymentError::SelfApproval { submitter: self.submitter.clone() });
        }
        let event = self.move_to(to, ctx)?;
        self.cab_approver = Some(ctx.actor.clone());
        Ok(vec![event])
    }

    /// APPROVED → DEPLOYING: the current ring starts and work is dispatched to
    /// the connector (recorded as a DISPATCHED event).
    ///
    /// # Errors
    /// Wrong status.
    pub fn start(&mut self, handover: &Handover, ctx: &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError> {
        let moved = self.move_to(DeploymentStatus::Deploying, ctx)?;
        self.deploy_started_at = Some(ctx.now);
        self.enter_ring(self.current_ring, ctx.now, handover);
        let dispatched =
            self.dispatch(format!("deploy {} {} to {}", self.app_name, self.version, self.current_ring), handover, ctx);
        Ok(vec![moved, dispatched])
    }

    /// Records cumulative outcome counts for a started ring while DEPLOYING,
    /// and whether the reporter exercised the rollback there. The ring becomes
    /// compliant the first time the counts meet `policy` (that ring's).
    /// Re-sending the same report changes nothing and returns no event; lower
    /// counts are refused.
    ///
    /// # Errors
    /// Not deploying, ring not started, or a count that went down.
    pub fn report_outcome(
        &mut self,
        outcome: Outcome,
        policy: &RingPolicy,
        ctx: &ChangeContext,
    ) -> Result<Vec<NewEvent>, DeploymentError> {
        let Outcome { ring, success_count, failure_count, rollback_validated } = outcome;
        if self.status != DeploymentStatus::Deploying {
            return Err(DeploymentError::NotDeploying { status: self.status });
        }
        let progress = self.current_progress(ring, success_count, failure_count)?;
        let validates_rollback = rollback_validated && progress.rollback_validated_at.is_none();
        if progress.success_count == success_count && progress.failure_count == failure_count && !validates_rollback {
            // A retried report: nothing changed, nothing to record.
            return Ok(Vec::new());
        }
        for (field, now, reported) in [
            ("success_count", progress.success_count, success_count),
            ("failure_count", progress.failure_count, failure_count),
        ] {
            if reported < now {
                return Err(DeploymentError::CountDecreased { ring, field, current: now, reported });
            }
        }
        let counts_changed = (progress.success_count, progress.failure_count) != (success_count, failure_count);
        if counts_changed {
            progress.last_reported_at = Some(ctx.now);
        }
        progress.success_count = success_count;
        progress.failure_count = failure_count;
        if progress.compliant_at.is_none() && policy.is_compliant(success_count, failure_count) {
            progress.compliant_at = Some(ctx.now);
        }
        if validates_rollback {
            progress.rollback_validated_at = Some(ctx.now);
        }
        let reason = format!(
            "{ring}: {success_count} succeeded, {failure_count} failed (success rate {:.3}){}",
            progress.success_rate(),
            if validates_rollback { "; rollback validated" } else { "" }
        );
        if counts_changed {
            // Outcomes flow again: no longer stalled.
            self.stalled_since = None;
        }
        self.updated_at = ctx.now;
        let mut event =
            self.event(EventKind::OutcomeReported, Some(self.status), &ChangeContext { reason, ..ctx.clone() });
        event.ring = ring;
        Ok(vec![event])
    }

    /// The progress of `ring` when counts may be recorded for it: the
    /// current ring, started, with a plausible number of devices.
    fn current_progress(
        &mut self,
        ring: Ring,
        success_count: u64,
        failure_count: u64,
    ) -> Result<&mut RingProgress, DeploymentError> {
        let current = self.current_ring;
        if ring < current {
            return Err(DeploymentError::RingLeft { ring, current });
        }
        let reported = success_count.saturating_add(failure_count);
        if reported > MAX_RING_DEVICES {
            return Err(DeploymentError::TooManyDevices { ring, reported, limit: MAX_RING_DEVICES });
        }
        let progress = self
            .rings
            .iter_mut()
            .find(|p| p.ring == ring && ring == current)
            .ok_or(DeploymentError::RingNotStarted { ring, current })?;
        if let Some(limit) = progress.expected_devices.filter(|limit| reported > *limit) {
            return Err(DeploymentError::TooManyDevices { ring, reported, limit });
        }
        Ok(progress)
    }

    /// Replaces the current ring's counts (lower ones included) when a
    /// reporter got them wrong. Compliance is re-derived from the corrected
    /// figures; the event keeps the figures before and after and the reason.
    ///
    /// # Errors
    /// Not DEPLOYING, not the current ring, or implausible counts.
    pub fn correct_outcome(
        &mut self,
        outcome: Outcome,
        policy: &RingPolicy,
        ctx: &ChangeContext,
    ) -> Result<Vec<NewEvent>, DeploymentError> {
        let Outcome { ring, success_count, failure_count, .. } = outcome;
        if self.status != DeploymentStatus::Deploying {
            return Err(DeploymentError::NotDeploying { status: self.status });
        }
        let progress = self.current_progress(ring, success_count, failure_count)?;
        let before = (progress.success_count, progress.failure_count);
        if before == (success_count, failure_count) {
            return Ok(Vec::new());
        }
        progress.success_count = success_count;
        progress.failure_count = failure_count;
        progress.compliant_at = if policy.is_compliant(success_count, failure_count) {
            progress.compliant_at.or(Some(ctx.now))
        } else {
            None
        };
        let reason = format!(
            "{ring}: corrected from {} succeeded, {} failed to {success_count} succeeded, {failure_count} failed: {}",
            before.0, before.1, ctx.reason
        );
        self.updated_at = ctx.now;
        let mut event =
            self.event(EventKind::OutcomeCorrected, Some(self.status), &ChangeContext { reason, ..ctx.clone() });
        event.ring = ring;
        Ok(vec![event])
    }

    /// DEPLOYING → COMPLETED, once the deployment is in its target ring.
    ///
    /// # Errors
    /// Wrong status or target ring not reached.
    pub fn complete(&mut self, ctx: &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError> {
        self.status.check_transition(DeploymentStatus::Completed)?;
        if self.current_ring != self.target_ring {
            return Err(DeploymentError::TargetRingNotReached { current: self.current_ring, target: self.target_ring });
        }
        Ok(vec![self.move_to(DeploymentStatus::Completed, ctx)?])
    }

    /// Moves one ring forward after `evaluation` of the current ring passed,
    /// starting the next ring and dispatching to it; leaving the target ring
    /// completes the deployment instead.
    ///
    /// # Errors
    /// Not DEPLOYING, an evaluation of another ring, or a failed gate.
    pub fn promote(
        &mut self,
        evaluation: &GateEvaluation,
        handover: Option<&Handover>,
        ctx: &ChangeContext,
    ) -> Result<Vec<NewEvent>, DeploymentError> {
        if self.status != DeploymentStatus::Deploying {
            return Err(DeploymentError::NotPromotable { status: self.status });
        }
        if evaluation.ring != self.current_ring {
            return Err(DeploymentError::RingMoved { expected: evaluation.ring, current: self.current_ring });
        }
        if !evaluation.passed {
            let failed: Vec<_> = evaluation.failed_checks().map(|c| c.message.as_str()).collect();
            return Err(DeploymentError::GateNotPassed { ring: evaluation.ring, failed: failed.join("; ") });
        }
        let from = self.current_ring;
        if let Some(progress) = self.rings.iter_mut().find(|p| p.ring == from) {
            progress.promoted_at = Some(ctx.now);
        }
        let Some(next) = evaluation.next_ring else {
            let done =
                ChangeContext { reason: format!("promoted out of {from}, the target ring: complete"), ..ctx.clone() };
            return Ok(vec![self.move_to(DeploymentStatus::Completed, &done)?]);
        };
        let handover = handover.cloned().unwrap_or_else(|| Handover {
            connector: "no connector".into(),
            object_id: None,
            device_count: None,
        });
        self.current_ring = next;
        self.updated_at = ctx.now;
        self.enter_ring(next, ctx.now, &handover);
        let promoted = self.event(EventKind::RingPromoted, Some(self.status), ctx);
        let dispatched = self.dispatch(format!("deploy {} {} to {next}", self.app_name, self.version), &handover, ctx);
        Ok(vec![promoted, dispatched])
    }

    /// Promotes one step although `evaluation` did not pass (the gate or the
    /// change calendar held it): break-glass, requested by `requested_by` and
    /// approved by `ctx.actor`, recorded as its own event before the promotion.
    ///
    /// # Errors
    /// One identity both requested and approved it; as [`Deployment::promote`] otherwise.
    pub fn break_glass(
        &mut self,
        evaluation: &GateEvaluation,
        handover: Option<&Handover>,
        requested_by: &str,
        ctx: &ChangeContext,
    ) -> Result<Vec<NewEvent>, DeploymentError> {
        if requested_by == ctx.actor {
            return Err(DeploymentError::BreakGlassAlone(requested_by.to_owned()));
        }
        let overridden: Vec<_> = evaluation.failed_checks().map(|c| c.message.as_str()).collect();
        let why = ChangeContext {
            reason: format!(
                "break-glass out of {} requested by {requested_by} ({}), approved by {}; overrides: {}",
                self.current_ring,
                ctx.reason,
                ctx.actor,
                if overridden.is_empty() { "nothing".to_owned() } else { overridden.join("; ") }
            ),
            ..ctx.clone()
        };
        let note = self.event(EventKind::BreakGlass, Some(self.status), &why);
        let forced = GateEvaluation { passed: true, ..evaluation.clone() };
        let mut events = vec![note];
        events.extend(self.promote(&forced, handover, ctx)?);
        Ok(events)
    }

    /// Any non-terminal status → ROLLED_BACK, after dispatching the removal
    /// from every ring entered.
    ///
    /// # Errors
    /// The deployment is already terminal.
    /// `removal` is the handed-over removal; `None` when nothing was deployed.
    pub fn roll_back(
        &mut self,
        removal: Option<&Handover>,
        ctx: &ChangeContext,
    ) -> Result<Vec<NewEvent>, DeploymentError> {
        self.status.check_transition(DeploymentStatus::RolledBack)?;
        let rings: Vec<_> = self.rings.iter().map(|p| p.ring.to_string()).collect();
        let removal = removal.map(|handover| {
            self.dispatch(format!("remove {} {} from {}", self.app_name, self.version, rings.join(", ")), handover, ctx)
        });
        if removal.is_some() {
            let current = self.current_ring;
            if let Some(progress) = self.rings.iter_mut().find(|p| p.ring == current) {
                progress.delivery = Delivery::Pending;
                progress.delivery_error = None;
            }
        }
        let rolled_back = self.move_to(DeploymentStatus::RolledBack, ctx)?;
        Ok(removal.into_iter().chain([rolled_back]).collect())
    }

    /// Stops the controller from acting on the deployment; outcomes are still recorded.
    ///
    /// # Errors
    /// Terminal, or already paused.
    pub fn pause(&mut self, ctx: &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError> {
        self.set_paused(true, EventKind::Paused, ctx)
    }

    /// Lets the controller act on the deployment again.
    ///
    /// # Errors
    /// Terminal, or not paused.
    pub fn resume(&mut self, ctx: &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError> {
        self.set_paused(false, EventKind::Resumed, ctx)
    }

    fn set_paused(
        &mut self,
        paused: bool,
        kind: EventKind,
        ctx: &ChangeContext,
    ) -> Result<Vec<NewEvent>, DeploymentError> {
        if self.status.is_terminal() {
            return Err(DeploymentError::NotLive { status: self.status });
        }
        if self.paused == paused {
            return Err(DeploymentError::AlreadyInState(if paused { "paused" } else { "running (not paused)" }));
        }
        self.paused = paused;
        self.updated_at = ctx.now;
        Ok(vec![self.event(kind, Some(self.status), ctx)])
    }

    /// Flags the deployment stalled (no new outcomes); nothing moves. Once per stall.
    pub fn flag_stalled(&mut self, ctx: &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError> {
        if self.stalled_since.is_some() || self.status != DeploymentStatus::Deploying {
            return Ok(Vec::new());
        }
        self.stalled_since = Some(ctx.now);
        self.updated_at = ctx.now;
        Ok(vec![self.event(EventKind::Stalled, Some(self.status), ctx)])
    }

    /// Any non-terminal status → FAILED.
    ///
    /// # Errors
    /// The deployment is already terminal.
    pub fn fail(&mut self, ctx: &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError> {
        Ok(vec![self.move_to(DeploymentStatus::Failed, ctx)?])
    }

    /// The connector took the work handed over for `ring`.
    pub fn delivered(&mut self, ring: Ring, handover: &Handover, ctx: &ChangeContext) -> Vec<NewEvent> {
        let Some(progress) = self.rings.iter_mut().find(|p| p.ring == ring) else { return Vec::new() };
        if progress.delivery == Delivery::Delivered {
            return Vec::new();
        }
        progress.delivery = Delivery::Delivered;
        progress.delivery_error = None;
        if handover.object_id.is_some() {
            progress.connector_object_id = handover.object_id.clone();
        }
        if handover.device_count.is_some() {
            progress.expected_devices = handover.device_count;
        }
        self.updated_at = ctx.now;
        let object = handover.object_id.as_ref().map(|id| format!(" (object {id})")).unwrap_or_default();
        let reason = format!("connector {:?} took the work in {ring}{object}", handover.connector);
        let mut event = self.event(EventKind::Delivered, Some(self.status), &ChangeContext { reason, ..ctx.clone() });
        event.ring = ring;
        vec![event]
    }

    /// A delivery attempt for `ring` failed transiently: it stays pending and
    /// is retried. Recorded once per distinct error, not once per attempt.
    pub fn delivery_failed(&mut self, ring: Ring, connector: &str, error: &str, ctx: &ChangeContext) -> Vec<NewEvent> {
        let Some(progress) = self.rings.iter_mut().find(|p| p.ring == ring) else { return Vec::new() };
        if progress.delivery != Delivery::Pending || progress.delivery_error.as_deref() == Some(error) {
            return Vec::new();
        }
        progress.delivery_error = Some(error.to_owned());
        self.updated_at = ctx.now;
        let reason = format!("delivery to connector {connector:?} in {ring} failed, retrying: {error}");
        let mut event =
            self.event(EventKind::DeliveryFailed, Some(self.status), &ChangeContext { reason, ..ctx.clone() });
        event.ring = ring;
        vec![event]
    }

    /// The connector refused the work for `ring` (PERMANENT): a live
    /// deployment fails with the refusal as its reason; a terminal one (a
    /// refused removal after a rollback) keeps its status, and the refusal is
    /// recorded for an operator to act on.
    pub fn delivery_refused(&mut self, ring: Ring, connector: &str, error: &str, ctx: &ChangeContext) -> Vec<NewEvent> {
        let Some(progress) = self.rings.iter_mut().find(|p| p.ring == ring) else { return Vec::new() };
        if progress.delivery == Delivery::Refused {
            return Vec::new();
        }
        progress.delivery = Delivery::Refused;
        progress.delivery_error = Some(error.to_owned());
        let reason = format!("connector {connector:?} refused the work in {ring}: {error}");
        let refusal = ChangeContext { reason, ..ctx.clone() };
        if self.status.is_terminal() {
            self.updated_at = ctx.now;
            let mut event = self.event(EventKind::DeliveryFailed, Some(self.status), &refusal);
            event.ring = ring;
            return vec![event];
        }
        self.move_to(DeploymentStatus::Failed, &refusal).map(|event| vec![event]).unwrap_or_default()
    }

    pub fn progress(&self, ring: Ring) -> Option<&RingProgress> {
        self.rings.iter().find(|p| p.ring == ring)
    }

    fn enter_ring(&mut self, ring: Ring, at: DateTime<Utc>, handover: &Handover) {
        if self.progress(ring).is_none() {
            let mut progress = RingProgress::started(ring, at);
            progress.connector_object_id = handover.object_id.clone();
            self.rings.push(progress);
            self.rings.sort_by_key(|p| p.ring);
        }
    }

    fn move_to(&mut self, to: DeploymentStatus, ctx: &ChangeContext) -> Result<NewEvent, TransitionError> {
        let from = self.status;
        from.check_transition(to)?;
        self.status = to;
        self.status_reason = ctx.reason.clone();
        self.updated_at = ctx.now;
        if to.is_terminal() {
            self.ended_at = Some(ctx.now);
        }
        Ok(self.event(EventKind::StatusChanged, Some(from), ctx))
    }

    /// A DISPATCHED event recording the work handed to the connector.
    fn dispatch(&self, what: String, handover: &Handover, ctx: &ChangeContext) -> NewEvent {
        let object = handover.object_id.as_ref().map(|id| format!(" (object {id})")).unwrap_or_default();
        let reason = format!("{what} via {}{object}", handover.connector);
        self.event(EventKind::Dispatched, Some(self.status), &ChangeContext { reason, ..ctx.clone() })
    }

    fn event(&self, kind: EventKind, from_status: Option<DeploymentStatus>, ctx: &ChangeContext) -> NewEvent {
        NewEvent {
            deployment_id: self.id,
            kind,
            from_status,
            to_status: self.status,
            ring: self.current_ring,
            actor: ctx.actor.clone(),
            reason: ctx.reason.clone(),
            correlation_id: ctx.correlation_id.clone(),
            at: ctx.now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handover() -> Handover {
        Handover { connector: "sim".into(), object_id: Some("obj-1".into()), device_count: None }
    }

    fn outcome(ring: Ring, success_count: u64, failure_count: u64) -> Outcome {
        Outcome { ring, success_count, failure_count, rollback_validated: false }
    }

    fn lab_policy() -> RingPolicy {
        RingPolicy::default_for(Ring::Lab, DateTime::UNIX_EPOCH)
    }

    fn ctx(actor: &str) -> ChangeContext {
        ChangeContext {
            actor: actor.into(),
            reason: "because".into(),
            correlation_id: "corr-1".into(),
            now: DateTime::UNIX_EPOCH,
            fence: None,
        }
    }

    fn new_deployment(risk_score: u8, target_ring: Ring) -> Deployment {
        let new = NewDeployment { target_ring, risk_score, ..NewDeployment::example() };
        Deployment::create(Uuid::new_v4(), new, &ctx("alice")).0
    }

    #[test]
    fn create_records_pending_then_the_first_status() {
        let new = NewDeployment { risk_score: 51, site_class: SiteClass::AirGapped, ..NewDeployment::example() };
        let (d, events) = Deployment::create(Uuid::new_v4(), new, &ctx("alice"));
        assert_eq!(d.status, DeploymentStatus::AwaitingCab);
        assert!(d.requires_cab_approval);
        assert_eq!(d.current_ring, Ring::Lab);
        let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.from_status, e.to_status)).collect();
        assert_eq!(
            kinds,
            vec![
                (EventKind::Created, None, DeploymentStatus::Pending),
                (EventKind::StatusChanged, Some(DeploymentStatus::Pending), DeploymentStatus::AwaitingCab),
            ]
        );
        assert_eq!(events[1].actor, "system");
        assert!(events.iter().all(|e| e.correlation_id == "corr-1"));
    }

    #[test]
    fn cab_approval_needs_someone_other_than_the_submitter() {
        let mut d = new_deployment(80, Ring::Global);
        assert_eq!(d.approve(&ctx("alice")), Err(DeploymentError::SelfApproval { submitter: "alice".into() }));
        assert_eq!(d.status, DeploymentStatus::AwaitingCab);
        let events = d.approve(&ctx("bob")).unwrap();
        assert_eq!(d.status, DeploymentStatus::Approved);
        assert_eq!(d.cab_approver.as_deref(), Some("bob"));
        assert_eq!(events[0].actor, "bob");
        assert!(matches!(d.reject(&ctx("carol")), Err(DeploymentError::Transition(_))));
    }

    #[test]
    fn low_risk_deployments_skip_cab_and_cannot_be_approved() {
        let mut d = new_deployment(50, Ring::Global);
        assert_eq!(d.status, DeploymentStatus::Approved);
        assert!(!d.requires_cab_approval);
        assert!(matches!(d.approve(&ctx("bob")), Err(DeploymentError::Transition(_))));
    }

    #[test]
    fn start_enters_the_current_ring_and_dispatches() {
        let mut d = new_deployment(10, Ring::Lab);
        let events = d.start(&handover(), &ctx("ops")).unwrap();
        assert_eq!(d.status, DeploymentStatus::Deploying);
        assert_eq!(d.rings.len(), 1);
        assert_eq!(d.rings[0].ring, Ring::Lab);
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            vec![EventKind::StatusChanged, EventKind::Dispatched]
        );
        assert!(d.start(&handover(), &ctx("ops")).is_err(), "starting twice is refused");
    }

    #[test]
    fn outcome_counts_only_grow_and_need_a_started_ring() {
        let mut d = new_deployment(10, Ring::Lab);
        assert_eq!(
            d.report_outcome(outcome(Ring::Lab, 1, 0), &lab_policy(), &ctx("agent")),
            Err(DeploymentError::NotDeploying { status: DeploymentStatus::Approved })
        );
        d.start(&handover(), &ctx("ops")).unwrap();
        assert!(matches!(
            d.report_outcome(outcome(Ring::Canary, 1, 0), &lab_policy(), &ctx("agent")),
            Err(DeploymentError::RingNotStarted { .. })
        ));
        d.report_outcome(outcome(Ring::Lab, 97, 3), &lab_policy(), &ctx("agent")).unwrap();
        assert_eq!(d.progress(Ring::Lab).unwrap().success_rate(), 0.97);
        let again = d
            .report_outcome(outcome(Ring::Lab, 97, 3), &lab_policy(), &ctx("agent"))
            .expect("same counts again are harmless");
        assert!(again.is_empty(), "a retried report records nothing");
        let err = d.report_outcome(outcome(Ring::Lab, 96, 5), &lab_policy(), &ctx("agent")).unwrap_err();
        assert_eq!(
            err,
            DeploymentError::CountDecreased { ring: Ring::Lab, field: "success_count", current: 97, reported: 96 }
        );
        assert_eq!(d.progress(Ring::Lab).unwrap().success_count, 97, "a refused report changes nothing");
    }

    #[test]
    fn compliance_is_reached_once_with_enough_devices_at_the_rate() {
        let mut d = new_deployment(10, Ring::Lab);
        d.start(&handover(), &ctx("ops")).unwrap();
        d.report_outcome(outcome(Ring::Lab, 1, 0), &lab_policy(), &ctx("agent")).unwrap();
        assert_eq!(d.progress(Ring::Lab).unwrap().compliant_at, None, "1/1 is not a sample");
        d.report_outcome(outcome(Ring::Lab, 96, 4), &lab_policy(), &ctx("agent")).unwrap();
        assert_eq!(d.progress(Ring::Lab).unwrap().compliant_at, None, "0.96 < 0.98");
        let later = ChangeContext { now: DateTime::UNIX_EPOCH + chrono::Duration::seconds(90), ..ctx("agent") };
        d.report_outcome(outcome(Ring::Lab, 196, 4), &lab_policy(), &later).unwrap();
        let lab = d.progress(Ring::Lab).unwrap();
        assert_eq!(lab.compliant_at, Some(later.now));
        assert!(lab.time_to_compliance().unwrap() >= chrono::Duration::seconds(90));
        let even_later = ChangeContext { now: later.now + chrono::Duration::seconds(60), ..ctx("agent") };
        d.report_outcome(outcome(Ring::Lab, 296, 4), &lab_policy(), &even_later).unwrap();
        assert_eq!(d.progress(Ring::Lab).unwrap().compliant_at, Some(later.now), "first time only");
    }

    #[test]
    fn complete_needs_the_target_ring() {
        let mut d = new_deployment(10, Ring::Global);
        d.start(&handover(), &ctx("ops")).unwrap();
        assert_eq!(
            d.complete(&ctx("ops")),
            Err(DeploymentError::TargetRingNotReached { current: Ring::Lab, target: Ring::Global })
        );
        let mut d = new_deployment(10, Ring::Lab);
        d.start(&handover(), &ctx("ops")).unwrap();
        d.complete(&ctx("ops")).unwrap();
        assert_eq!(d.status, DeploymentStatus::Completed);
        assert!(d.ended_at.is_some());
        assert!(d.fail(&ctx("ops")).is_err(), "terminal");
    }

    #[test]
    fn success_rate_is_zero_without_reports() {
        let p = RingProgress::started(Ring::Lab, DateTime::UNIX_EPOCH);
        assert_eq!(p.success_rate(), 0.0);
        assert_eq!(p.reported(), 0);
    }
}
