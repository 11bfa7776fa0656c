//! The change calendar's storage: windows (optimistic concurrency by
//! revision), the freeze (one row while set), and the audit log of both,
//! each change written in the transaction that records it. Showing
//! deployments reads a cached calendar; decisions read the database.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, SqlErr, TransactionTrait,
    TryIntoModel,
};

use super::entity::{calendar_change, change_freeze, change_window};
use super::{Page, Store, StoreError, StoreResult, parse};
use crate::domain::calendar::{
    Calendar, CalendarChange, CalendarChangeKind, CalendarEntry, FREEZE_SUBJECT, Freeze, WindowRecord,
};
use crate::domain::window::{ChangeWindow, WindowKind, WindowScope};
use crate::domain::{ChangeContext, ConnectorType, Label, Ring, SiteClass};

/// The one row of `change_freeze`.
const FREEZE_ROW: i32 = 1;
const FIRST_START_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

fn labels<T: Label>(values: &[T]) -> String {
    serde_json::to_string(&values.iter().map(|v| v.as_label()).collect::<Vec<_>>()).expect("labels serialize")
}

fn from_labels<T: Label>(json: &str, what: &str) -> StoreResult<Vec<T>> {
    let labels: Vec<String> =
        serde_json::from_str(json).map_err(|err| StoreError::Corrupt(format!("{what} list {json:?}: {err}")))?;
    labels.iter().map(|label| parse(label, what, T::from_label)).collect()
}

fn window_row(record: &WindowRecord) -> change_window::ActiveModel {
    let w = &record.window;
    change_window::ActiveModel {
        name: Set(w.name.clone()),
        kind: Set(w.kind.as_label().to_owned()),
        rule: Set(w.rule.clone()),
        first_start: Set(w.first_start.format(FIRST_START_FORMAT).to_string()),
        time_zone: Set(w.time_zone.name().to_owned()),
        duration_seconds: Set(i64::try_from(w.duration.as_secs()).unwrap_or(i64::MAX)),
        rings: Set(labels(&w.scope.rings)),
        site_classes: Set(labels(&w.scope.site_classes)),
        connector_types: Set(labels(&w.scope.connector_types)),
        forbids_rollback: Set(w.forbids_rollback),
        description: Set(w.description.clone()),
        revision: Set(record.revision),
        created_at: Set(record.created_at),
        updated_at: Set(record.updated_at),
    }
}

fn window_from_row(row: change_window::Model) -> StoreResult<WindowRecord> {
    let corrupt = |what: String| StoreError::Corrupt(format!("change window {:?}: {what}", row.name));
    let first_start = NaiveDateTime::parse_from_str(&row.first_start, FIRST_START_FORMAT)
        .map_err(|err| corrupt(format!("first start {:?}: {err}", row.first_start)))?;
    let kind = parse(&row.kind, "window kind", WindowKind::from_label)?;
    let duration = Duration::from_secs(u64::try_from(row.duration_seconds).unwrap_or_default());
    let mut window = ChangeWindow::new(&row.name, kind, &row.rule, first_start, &row.time_zone, duration)
        .map_err(|err| corrupt(err.to_string()))?;
    window.scope = WindowScope {
        rings: from_labels::<Ring>(&row.rings, "ring")?,
        site_classes: from_labels::<SiteClass>(&row.site_classes, "site class")?,
        connector_types: from_labels::<ConnectorType>(&row.connector_types, "connector type")?,
    };
    window.forbids_rollback = row.forbids_rollback;
    window.description = row.description;
    Ok(WindowRecord { window, revision: row.revision, created_at: row.created_at, updated_at: row.updated_at })
}

fn freeze_row(freeze: &Freeze) -> change_freeze::Model {
    change_freeze::Model {
        id: FREEZE_ROW,
        reason: freeze.reason.clone(),
        set_by: freeze.set_by.clone(),
        set_at: freeze.set_at,
        expires_at: freeze.expires_at,
    }
}

fn freeze_from_row(row: change_freeze::Model) -> Freeze {
    Freeze { reason: row.reason, set_by: row.set_by, set_at: row.set_at, expires_at: row.expires_at }
}

fn entry_json(entry: &CalendarEntry) -> String {
    let json = match entry {
        CalendarEntry::Window(record) => {
            serde_json::to_value(window_row(record).try_into_model().expect("every column set"))
        }
        CalendarEntry::Freeze(freeze) => serde_json::to_value(freeze_row(freeze)),
    };
    json.expect("rows serialize").to_string()
}

fn entry_from_json(kind: CalendarChangeKind, json: Option<&str>) -> StoreResult<Option<CalendarEntry>> {
    let Some(json) = json else { return Ok(None) };
    let corrupt = |err: serde_json::Error| StoreError::Corrupt(format!("calendar change entry: {err}"));
    Ok(Some(match kind {
        CalendarChangeKind::WindowCreated | CalendarChangeKind::WindowUpdated | CalendarChangeKind::WindowDeleted => {
            CalendarEntry::Window(Box::new(window_from_row(serde_json::from_str(json).map_err(corrupt)?)?))
        }
        CalendarChangeKind::FreezeSet | CalendarChangeKind::FreezeLifted | CalendarChangeKind::FreezeExpired => {
            CalendarEntry::Freeze(freeze_from_row(serde_json::from_str(json).map_err(corrupt)?))
        }
    }))
}

async fn log_calendar_change(
    txn: &impl ConnectionTrait,
    kind: CalendarChangeKind,
    subject: &str,
    before: Option<&CalendarEntry>,
    after: Option<&CalendarEntry>,
    ctx: &ChangeContext,
) -> StoreResult<()> {
    let row = calendar_change::ActiveModel {
        seq: NotSet,
        kind: Set(kind.as_label().to_owned()),
        subject: Set(subject.to_owned()),
        actor: Set(ctx.actor.clone()),
        reason: Set(ctx.reason.clone()),
        correlation_id: Set(ctx.correlation_id.clone()),
        before: Set(before.map(entry_json)),
        after: Set(after.map(entry_json)),
        created_at: Set(ctx.now),
    };
    calendar_change::Entity::insert(row).exec_without_returning(txn).await?;
    Ok(())
}

impl Store {
    /// Every window, by name.
    ///
    /// # Errors
    /// Database failures, or a row the code cannot read.
    pub async fn list_windows(&self) -> StoreResult<Vec<WindowRecord>> {
        self.guard(async {
            let rows = change_window::Entity::find().order_by_asc(change_window::Column::Name).all(&self.db).await?;
            rows.into_iter().map(window_from_row).collect()
        })
        .await
    }

    /// # Errors
    /// [`StoreError::WindowNotFound`]; database failures.
    pub async fn get_window(&self, name: &str) -> StoreResult<WindowRecord> {
        self.guard(async {
            let row = change_window::Entity::find_by_id(name.to_owned())
                .one(&self.db)
                .await?
                .ok_or_else(|| StoreError::WindowNotFound(name.to_owned()))?;
            window_from_row(row)
        })
        .await
    }

    /// The freeze row, whether or not it has expired.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_freeze(&self) -> StoreResult<Option<Freeze>> {
        self.guard(async {
            Ok(change_freeze::Entity::find_by_id(FREEZE_ROW).one(&self.db).await?.map(freeze_from_row))
        })
        .await
    }

    /// Every window and the freeze, read now.
    async fn read_calendar(&self) -> StoreResult<Calendar> {
        let windows = self.list_windows().await?.into_iter().map(|record| record.window).collect();
        Ok(Calendar { windows, freeze: self.get_freeze().await? })
    }

    /// Every window and the freeze, for decisions: on SQLite, where every
    /// change goes through this process, the kept copy (never older than the
    /// database, and its windows keep their computed starts); on PostgreSQL,
    /// where another replica may have changed it, read now.
    ///
    /// # Errors
    /// As [`Store::list_windows`].
    pub async fn calendar(&self) -> StoreResult<Arc<Calendar>> {
        if self.backend() == DbBackend::Postgres {
            return Ok(Arc::new(self.read_calendar().await?));
        }
        self.shown_calendar().await
    }

    /// The calendar for showing deployments (gate, next action): cached,
    /// forgotten when this process changes it, and on PostgreSQL read again
    /// at most a second later (another replica may have changed it).
    ///
    /// # Errors
    /// As [`Store::list_windows`].
    pub async fn shown_calendar(&self) -> StoreResult<Arc<Calendar>> {
        self.shown(&self.shown_calendar, async { Ok(Arc::new(self.read_calendar().await?)) }).await
    }

    /// Stores a new window, at most `max_windows` in all.
    ///
    /// # Errors
    /// [`StoreError::WindowExists`]; [`StoreError::TooManyWindows`]; database failures.
    pub async fn create_window(
        &self,
        window: &ChangeWindow,
        max_windows: u64,
        ctx: &ChangeContext,
    ) -> StoreResult<WindowRecord> {
        use sea_orm::PaginatorTrait;
        let record = WindowRecord { window: window.clone(), revision: 1, created_at: ctx.now, updated_at: ctx.now };
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            if change_window::Entity::find().count(&txn).await? >= max_windows {
                return Err(StoreError::TooManyWindows(max_windows));
            }
            match change_window::Entity::insert(window_row(&record)).exec_without_returning(&txn).await {
                Ok(_) => {}
                Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    return Err(StoreError::WindowExists(window.name.clone()));
                }
                Err(err) => return Err(err.into()),
            }
            let after = CalendarEntry::Window(Box::new(record.clone()));
            log_calendar_change(&txn, CalendarChangeKind::WindowCreated, &window.name, None, Some(&after), ctx).await?;
            txn.commit().await?;
            self.shown_calendar.changed();
            Ok(record)
        })
        .await
    }

    /// Replaces `before` with `after` if it is still at the revision read.
    ///
    /// # Errors
    /// [`StoreError::WindowConflict`] when it changed since; [`StoreError::WindowNotFound`]; database failures.
    pub async fn update_window(
        &self,
        before: &WindowRecord,
        after: &ChangeWindow,
        ctx: &ChangeContext,
    ) -> StoreResult<WindowRecord> {
        let saved = WindowRecord {
            window: after.clone(),
            revision: before.revision + 1,
            created_at: before.created_at,
            updated_at: ctx.now,
        };
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            let updated = change_window::Entity::update_many()
                .set(window_row(&saved))
                .filter(change_window::Column::Name.eq(before.window.name.as_str()))
                .filter(change_window::Column::Revision.eq(before.revision))
                .exec(&txn)
                .await?;
            if updated.rows_affected == 0 {
                drop(txn);
                self.get_window(&before.window.name).await?;
                return Err(StoreError::WindowConflict { name: before.window.name.clone(), expected: before.revision });
            }
            let (old, new) =
                (CalendarEntry::Window(Box::new(before.clone())), CalendarEntry::Window(Box::new(saved.clone())));
            log_calendar_change(&txn, CalendarChangeKind::WindowUpdated, &after.name, Some(&old), Some(&new), ctx)
                .await?;
            txn.commit().await?;
            self.shown_calendar.changed();
            Ok(saved)
        })
        .await
    }

    /// Deletes `record` if it is still at the revision read.
    ///
    /// # Errors
    /// [`StoreError::WindowConflict`] when it changed since; [`StoreError::WindowNotFound`]; database failures.
    pub async fn delete_window(&self, record: &WindowRecord, ctx: &ChangeContext) -> StoreResult<()> {
        let name = record.window.name.as_str();
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            let deleted = change_window::Entity::delete_many()
                .filter(change_window::Column::Name.eq(name))
                .filter(change_window::Column::Revision.eq(record.revision))
                .exec(&txn)
                .await?;
            if deleted.rows_affected == 0 {
                drop(txn);
                self.get_window(name).await?;
                return Err(StoreError::WindowConflict { name: name.to_owned(), expected: record.revision });
            }
            let before = CalendarEntry::Window(Box::new(record.clone()));
            log_calendar_change(&txn, CalendarChangeKind::WindowDeleted, name, Some(&before), None, ctx).await?;
            txn.commit().await?;
            self.shown_calendar.changed();
            Ok(())
        })
        .await
    }

    /// Sets the freeze (replacing one that holds) and logs it with the one it replaced.
    ///
    /// # Errors
    /// Database failures.
    pub async fn set_freeze(&self, freeze: &Freeze, ctx: &ChangeContext) -> StoreResult<()> {
        use sea_orm::sea_query::OnConflict;
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            let before = change_freeze::Entity::find_by_id(FREEZE_ROW).one(&txn).await?.map(freeze_from_row);
            let row: change_freeze::ActiveModel = freeze_row(freeze).into();
            change_freeze::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(change_freeze::Column::Id)
                        .update_columns([
                            change_freeze::Column::Reason,
                            change_freeze::Column::SetBy,
                            change_freeze::Column::SetAt,
                            change_freeze::Column::ExpiresAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
            let before = before.map(CalendarEntry::Freeze);
            let after = CalendarEntry::Freeze(freeze.clone());
            log_calendar_change(
                &txn,
                CalendarChangeKind::FreezeSet,
                FREEZE_SUBJECT,
                before.as_ref(),
                Some(&after),
                ctx,
            )
            .await?;
            txn.commit().await?;
            self.shown_calendar.changed();
            Ok(())
        })
        .await
    }

    /// Removes the freeze — `FreezeLifted` by an operator, or `FreezeExpired`
    /// only once it has expired at `ctx.now` — and logs it; `None` when no
    /// such freeze was there.
    ///
    /// # Errors
    /// Database failures.
    pub async fn remove_freeze(&self, kind: CalendarChangeKind, ctx: &ChangeContext) -> StoreResult<Option<Freeze>> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            let Some(before) = change_freeze::Entity::find_by_id(FREEZE_ROW).one(&txn).await?.map(freeze_from_row)
            else {
                return Ok(None);
            };
            let mut delete = change_freeze::Entity::delete_many().filter(change_freeze::Column::Id.eq(FREEZE_ROW));
            if kind == CalendarChangeKind::FreezeExpired {
                delete = delete.filter(change_freeze::Column::ExpiresAt.lte(ctx.now));
            }
            if delete.exec(&txn).await?.rows_affected == 0 {
                return Ok(None);
            }
            let entry = CalendarEntry::Freeze(before.clone());
            log_calendar_change(&txn, kind, FREEZE_SUBJECT, Some(&entry), None, ctx).await?;
            txn.commit().await?;
            self.shown_calendar.changed();
            Ok(Some(before))
        })
        .await
    }

    /// The calendar's change log after sequence `after`, of one subject (a
    /// window's name, or `freeze`) or all.
    ///
    /// # Errors
    /// Database failures, or a log entry the code cannot read.
    pub async fn list_calendar_changes(
        &self,
        subject: Option<&str>,
        after: Option<i64>,
        limit: u64,
    ) -> StoreResult<Page<CalendarChange>> {
        use calendar_change::Column;
        self.guard(async {
            let mut query = calendar_change::Entity::find();
            if let Some(subject) = subject {
                query = query.filter(Column::Subject.eq(subject));
            }
            let rows = self.rows_after(query, Column::Seq, after, limit).await?;
            Page::from_rows(
                rows,
                limit,
                |row| row.seq,
                |row| {
                    let kind = parse(&row.kind, "calendar change kind", CalendarChangeKind::from_label)?;
                    Ok(CalendarChange {
                        seq: row.seq,
                        kind,
                        before: entry_from_json(kind, row.before.as_deref())?,
                        after: entry_from_json(kind, row.after.as_deref())?,
                        subject: row.subject,
                        actor: row.actor,
                        reason: row.reason,
                        correlation_id: row.correlation_id,
                        at: row.created_at,
                    })
                },
            )
        })
        .await
    }
}
