//! Risk model use-cases: the versions, and creating and activating one,
//! each change recorded with who, when and why.

use std::sync::Arc;

use super::AppResult;
use crate::domain::ChangeContext;
use crate::domain::risk::RiskModel;
use crate::store::Store;

/// Risk model use-cases.
#[derive(Clone)]
pub struct RiskModels {
    store: Arc<Store>,
}

impl RiskModels {
    pub fn new(store: Arc<Store>) -> RiskModels {
        RiskModels { store }
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

    /// Stores `model` as the next version (inactive).
    ///
    /// # Errors
    /// Database failures.
    pub async fn create(&self, model: &RiskModel, ctx: &ChangeContext) -> AppResult<RiskModel> {
        Ok(self.store.create_risk_model(model, ctx).await?)
    }

    /// Makes `version` the model that scores new deployments.
    ///
    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn activate(&self, version: i32, ctx: &ChangeContext) -> AppResult<RiskModel> {
        let model = self.store.activate_risk_model(version, ctx).await?;
        tracing::info!(version = model.version, actor = %ctx.actor, "risk model activated");
        Ok(model)
    }
}
