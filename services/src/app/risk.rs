//! Risk model use-cases: the versions, and creating (idempotent on its
//! request id) and activating one (conditional on its etag), each change
//! recorded with who, when and why.

use std::sync::Arc;

use super::{AppError, AppResult, ControlChanges, Guarded, fingerprint, replayed};
use crate::domain::ChangeContext;
use crate::domain::control::{self, ControlSubject};
use crate::domain::risk::RiskModel;
use crate::store::audit::RequestKey;
use crate::store::{Store, StoreError};

/// Risk model use-cases.
#[derive(Clone)]
pub struct RiskModels {
    store: Arc<Store>,
    /// Holds activations that raise the CAB threshold for a second admin.
    control: ControlChanges,
}

impl RiskModels {
    pub fn new(store: Arc<Store>, control: ControlChanges) -> RiskModels {
        RiskModels { store, control }
    }

    /// # Errors
    /// Database failures.
    pub async fn list(&self) -> AppResult<Vec<RiskModel>> {
        Ok(self.store.list_risk_models().await?)
    }

    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn get(&self, version: i32) -> AppResult<RiskModel> {
        Ok(self.store.get_risk_model(version).await?)
    }

    /// Stores `model` as the next version (inactive). With a request id, a
    /// retry with the same content returns the version it created.
    ///
    /// # Errors
    /// ALREADY_EXISTS for a request id used with other content; database failures.
    pub async fn create(
        &self,
        model: &RiskModel,
        request_id: Option<&str>,
        ctx: &ChangeContext,
    ) -> AppResult<RiskModel> {
        let key = request_id.map(|request_id| RequestKey {
            operation: "create_risk_model",
            request_id: request_id.to_owned(),
            fingerprint: fingerprint(&model.requested_content()),
        });
        let replay = async |key: &RequestKey| -> AppResult<Option<RiskModel>> {
            match replayed(&self.store, key).await? {
                Some(version) => {
                    let version = version.parse().map_err(|_| AppError::Internal(format!("bad target {version:?}")))?;
                    Ok(Some(self.store.get_risk_model(version).await?))
                }
                None => Ok(None),
            }
        };
        if let Some(key) = &key
            && let Some(first) = replay(key).await?
        {
            return Ok(first);
        }
        match self.store.create_risk_model(model, key.as_ref(), ctx).await {
            Ok(created) => Ok(created),
            // A concurrent retry won: answer as it did.
            Err(StoreError::RequestIdTaken(_)) if let Some(key) = &key => replay(key)
                .await?
                .ok_or_else(|| AppError::Aborted("a concurrent call with the same request_id failed; retry".into())),
            Err(err) => Err(err.into()),
        }
    }

    /// Makes `version` the model that scores new deployments; when `etag`
    /// is given, only if the version is still at it. A model with a higher
    /// CAB threshold than the active one's is proposed instead, for a
    /// second admin.
    ///
    /// # Errors
    /// NOT_FOUND; ABORTED for a stale etag; database failures.
    pub async fn activate(
        &self,
        version: i32,
        etag: Option<&str>,
        ctx: &ChangeContext,
    ) -> AppResult<Guarded<RiskModel>> {
        let candidate = self.store.get_risk_model(version).await?;
        let active = self.store.active_risk_model().await?;
        if let Some(weakening) = control::threshold_weakening(active.threshold, candidate.threshold) {
            if let Some(etag) = etag
                && candidate.etag() != etag
            {
                return Err(StoreError::RiskModelConflict { version, expected: etag.to_owned() }.into());
            }
            let subject = ControlSubject::RiskModelActivation { active_version: Some(active.version), version };
            let change = self.control.propose(subject, vec![weakening], ctx).await?;
            return Ok(Guarded::Proposed { current: candidate, change });
        }
        let model = self.store.activate_risk_model(version, etag, ctx).await?;
        tracing::info!(version = model.version, actor = %ctx.actor, "risk model activated");
        Ok(Guarded::Applied(model))
    }
}
