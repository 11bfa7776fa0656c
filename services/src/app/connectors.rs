//! Connector registry use-cases: create (a retry of the same definition
//! returns it), read, update and delete with etags, on-demand health probes,
//! and circuit breakers for operators. A changed or deleted definition is
//! forgotten by the drivers at once.

use std::sync::Arc;

use super::{AppError, AppResult, check_etag};
use crate::clock::Clock;
use crate::connectors::{BreakerView, Connectors};
use crate::domain::connector::{ConnectorDef, Health};
use crate::domain::{ChangeContext, ConnectorType};
use crate::store::{Store, StoreError};

/// Connector registry use-cases.
#[derive(Clone)]
pub struct ConnectorRegistry {
    store: Arc<Store>,
    connectors: Arc<Connectors>,
    clock: Clock,
}

impl ConnectorRegistry {
    pub fn new(store: Arc<Store>, connectors: Arc<Connectors>, clock: Clock) -> ConnectorRegistry {
        ConnectorRegistry { store, connectors, clock }
    }

    /// The clock every decision of this layer reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Stores a new connector. A `retry` (the call carried a request id)
    /// of the same definition returns the one stored.
    ///
    /// # Errors
    /// ALREADY_EXISTS for another definition under the name; database failures.
    pub async fn create(&self, def: ConnectorDef, retry: bool) -> AppResult<ConnectorDef> {
        match self.store.create_connector(&def).await {
            Ok(()) => {
                tracing::info!(connector = %def.name, driver = def.driver.as_label(), "connector created");
                Ok(def)
            }
            Err(StoreError::ConnectorExists(_)) => {
                let existing = self.store.get_connector(&def.name).await?;
                let same = ConnectorDef {
                    created_at: def.created_at,
                    updated_at: def.updated_at,
                    health: None,
                    ..existing.clone()
                } == def;
                match same && retry {
                    true => Ok(existing),
                    false => Err(AppError::AlreadyExists(format!(
                        "connector {:?} already exists; update it or pick another name",
                        def.name
                    ))),
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn get(&self, name: &str) -> AppResult<ConnectorDef> {
        Ok(self.store.get_connector(name).await?)
    }

    /// A page of connectors by name after `after`, and whether more follow.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list(
        &self,
        connector_type: Option<ConnectorType>,
        after: Option<&str>,
        limit: u64,
    ) -> AppResult<(Vec<ConnectorDef>, bool)> {
        Ok(self.store.list_connectors(connector_type, after, limit).await?)
    }

    /// Replaces the named connector with what `change` makes of it.
    ///
    /// # Errors
    /// NOT_FOUND; ABORTED for a stale etag; whatever `change` refuses.
    pub async fn update(
        &self,
        name: &str,
        etag: Option<i64>,
        change: impl FnOnce(&ConnectorDef) -> AppResult<ConnectorDef>,
    ) -> AppResult<ConnectorDef> {
        let current = self.store.get_connector(name).await?;
        check_etag(etag, current.revision, format_args!("connector {:?}", current.name))?;
        let saved = self.store.update_connector(&change(&current)?).await?;
        self.connectors.forget(&saved.name);
        Ok(saved)
    }

    /// # Errors
    /// NOT_FOUND; ABORTED for a stale etag; database failures.
    pub async fn delete(&self, name: &str, etag: Option<i64>) -> AppResult<()> {
        let current = self.store.get_connector(name).await?;
        self.store.delete_connector(&current.name, etag).await?;
        self.connectors.forget(&current.name);
        Ok(())
    }

    /// Probes the named connector now (the result is stored).
    ///
    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn probe(&self, name: &str) -> AppResult<(ConnectorDef, Health)> {
        let def = self.store.get_connector(name).await?;
        let health = self.connectors.probe(&def).await?;
        Ok((def, health))
    }

    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn breaker(&self, name: &str) -> AppResult<(ConnectorDef, BreakerView)> {
        let def = self.store.get_connector(name).await?;
        let view = self.connectors.breaker(&def);
        Ok((def, view))
    }

    /// Closes the named connector's breaker, as `ctx.actor` for `ctx.reason`.
    ///
    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn reset_breaker(&self, name: &str, ctx: &ChangeContext) -> AppResult<(ConnectorDef, BreakerView)> {
        let def = self.store.get_connector(name).await?;
        let view = self.connectors.reset_breaker(&def);
        tracing::info!(connector = %def.name, actor = %ctx.actor, reason = %ctx.reason, "circuit breaker reset");
        Ok((def, view))
    }
}
