//! Connector registry use-cases: create (idempotent on its request id),
//! read, update and delete with etags, on-demand health probes, and circuit
//! breakers for operators; every change is audited. A changed or deleted
//! definition is forgotten by the drivers at once.

use crate::domain::Label;
use std::sync::Arc;

use super::{AppError, AppResult, check_etag, fingerprint, replayed};
use crate::clock::Clock;
use crate::connectors::{BreakerView, Connectors};
use crate::domain::connector::{ConnectorDef, Health};
use crate::domain::{Change, ChangeContext, ConnectorType};
use crate::store::audit::RequestKey;
use crate::store::{Page, Store, StoreError};

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

    /// Stores a new connector, audited. With a request id, a retry with the
    /// same content returns the connector it created.
    ///
    /// # Errors
    /// ALREADY_EXISTS for an existing name or a request id used with other
    /// content; database failures.
    pub async fn create(
        &self,
        def: ConnectorDef,
        request_id: Option<&str>,
        ctx: &ChangeContext,
    ) -> AppResult<ConnectorDef> {
        self.check_egress(&def)?;
        let key = request_id.map(|request_id| RequestKey {
            operation: "create_connector",
            request_id: request_id.to_owned(),
            fingerprint: fingerprint(&def.requested_content()),
        });
        if let Some(key) = &key
            && let Some(name) = replayed(&self.store, key).await?
        {
            return Ok(self.store.get_connector(&name).await?);
        }
        match self.store.create_connector(&def, key.as_ref(), ctx).await {
            Ok(()) => {
                tracing::info!(connector = %def.name, driver = def.driver.as_label(), actor = %ctx.actor, "connector created");
                Ok(def)
            }
            Err(StoreError::ConnectorExists(_)) => Err(AppError::AlreadyExists(format!(
                "connector {:?} already exists; update it or pick another name",
                def.name
            ))),
            // A concurrent retry won: answer as it did.
            Err(StoreError::RequestIdTaken(_)) if let Some(key) = &key => match replayed(&self.store, key).await? {
                Some(name) => Ok(self.store.get_connector(&name).await?),
                None => Err(AppError::Aborted("a concurrent call with the same request_id failed; retry".into())),
            },
            Err(err) => Err(err.into()),
        }
    }

    /// INVALID_ARGUMENT when the endpoint is somewhere connector calls may not go.
    fn check_egress(&self, def: &ConnectorDef) -> AppResult<()> {
        let endpoint = def.endpoint.as_deref().and_then(|endpoint| url::Url::parse(endpoint).ok());
        match endpoint.and_then(|url| self.connectors.egress().refuse_url(&url)) {
            Some(why) => Err(AppError::invalid("connector.endpoint", format!("refused: {why}"))),
            None => Ok(()),
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

    /// Replaces the named connector with what `change` makes of it, audited.
    ///
    /// # Errors
    /// NOT_FOUND; ABORTED for a stale etag; whatever `change` refuses.
    pub async fn update(
        &self,
        name: &str,
        etag: Option<i64>,
        ctx: &ChangeContext,
        change: impl FnOnce(&ConnectorDef) -> AppResult<ConnectorDef>,
    ) -> AppResult<ConnectorDef> {
        let current = self.store.get_connector(name).await?;
        check_etag(etag, current.revision, format_args!("connector {:?}", current.name))?;
        let changed = change(&current)?;
        self.check_egress(&changed)?;
        let saved = self.store.update_connector(&current, &changed, ctx).await?;
        self.connectors.forget(&saved.name);
        Ok(saved)
    }

    /// Deletes the named connector, audited.
    ///
    /// # Errors
    /// NOT_FOUND; ABORTED for a stale etag; database failures.
    pub async fn delete(&self, name: &str, etag: Option<i64>, ctx: &ChangeContext) -> AppResult<()> {
        let current = self.store.get_connector(name).await?;
        check_etag(etag, current.revision, format_args!("connector {:?}", current.name))?;
        self.store.delete_connector(&current, ctx).await?;
        self.connectors.forget(&current.name);
        Ok(())
    }

    /// The connector change log after sequence `after`, of one connector or all.
    ///
    /// # Errors
    /// Database failures.
    pub async fn changes(
        &self,
        name: Option<&str>,
        after: Option<i64>,
        limit: u64,
    ) -> AppResult<Page<Change<ConnectorDef>>> {
        Ok(self.store.list_connector_changes(name, after, limit).await?)
    }

    /// Probes the named connector now (the result is stored).
    ///
    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn probe(&self, name: &str) -> AppResult<(ConnectorDef, Health)> {
        let def = self.store.get_connector(name).await?;
        let health = self.connectors.probe(&def, None).await?;
        Ok((def, health))
    }

    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn breaker(&self, name: &str) -> AppResult<(ConnectorDef, BreakerView)> {
        let def = self.store.get_connector(name).await?;
        let view = self.connectors.breaker(&def).await;
        Ok((def, view))
    }

    /// Closes the named connector's breaker, as `ctx.actor` for
    /// `ctx.reason`, if it is still at `etag` when one is given; audited.
    ///
    /// # Errors
    /// NOT_FOUND; ABORTED when the breaker changed since `etag`; database failures.
    pub async fn reset_breaker(
        &self,
        name: &str,
        etag: Option<&str>,
        ctx: &ChangeContext,
    ) -> AppResult<(ConnectorDef, BreakerView)> {
        let def = self.store.get_connector(name).await?;
        let view = self.connectors.reset_breaker(&def, etag).await.map_err(|current| {
            AppError::Aborted(format!(
                "the breaker of connector {name:?} changed since etag {:?} was read (it is {:?} now); get it again and retry",
                etag.unwrap_or_default(),
                current.etag()
            ))
        })?;
        self.store.log_breaker_reset(&def, ctx).await?;
        tracing::info!(connector = %def.name, actor = %ctx.actor, reason = %ctx.reason, "circuit breaker reset");
        Ok((def, view))
    }
}
