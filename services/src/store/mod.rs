//! The store: persistence through sea-orm, on SQLite (embedded default, WAL)
//! or PostgreSQL with the same code. This module holds the infrastructure —
//! connection, migrations, health probes, the write lock, per-operation
//! budgets, pages, the feed of committed events — and one repository module
//! per aggregate: `deployments`, `promotions`, `connectors`, `risk`, `audit`.
//!
//! Event sequences follow commit order, so that a reader resuming after a
//! sequence misses nothing. On SQLite writes go through one in-process lock
//! held across commit and publish (the database's own single-writer rule
//! made explicit: no SQLITE_BUSY), and the feed is fed at commit. On
//! PostgreSQL several processes write at once, kept correct by revisions,
//! unique keys and fencing tokens; the transactions that append events take
//! one transaction-scoped advisory lock just before appending, so sequences
//! are handed out in commit order across every replica, and the feed is fed
//! by tailing the event table (woken by local commits, by other replicas
//! through the coordination bus, and by a short poll).
//!
//! Every operation runs within a time budget (cut shorter by the served
//! call's deadline) and tells the health probe when the database failed;
//! SQLite writes are refused once the file opened is no longer at its path.

pub mod audit;
pub mod calendar;
mod coalesce;
pub mod connectors;
pub mod control;
pub mod deployments;
pub mod entity;
pub mod leases;
pub mod migration;
pub mod promotions;
mod revisions;
pub mod risk;
pub mod secrets;

pub use deployments::{Alongside, CreateOutcome, DeploymentFilter, NewCreate, StoredEvent};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{
    AccessMode, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, EntityTrait, IsolationLevel, QueryFilter, QueryOrder, QuerySelect, Select, Statement,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, Notify, broadcast};
use uuid::Uuid;

use crate::domain::{Deployment, Ring, RingPolicies};

/// How many committed events the feed buffers for a slow watcher before it
/// is told it fell behind, unless configured otherwise.
pub const DEFAULT_EVENT_FEED_CAPACITY: usize = 4096;

/// Errors of the persistence layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("deployment {0} not found")]
    NotFound(Uuid),
    /// The row changed since it was read (optimistic concurrency).
    #[error("deployment {id} was changed concurrently (revision {expected} is stale)")]
    RevisionConflict { id: Uuid, expected: i64 },
    /// A ring policy changed since it was read.
    #[error("the {ring} policy was changed concurrently (revision {expected} is stale)")]
    PolicyConflict { ring: Ring, expected: i64 },
    #[error("risk model version {0} not found")]
    RiskModelNotFound(i32),
    /// A risk model was activated or deactivated since it was read.
    #[error("risk model version {version} changed since etag {expected:?} was read")]
    RiskModelConflict { version: i32, expected: String },
    #[error("connector {0:?} not found")]
    ConnectorNotFound(String),
    #[error("control change {0} not found")]
    ControlChangeNotFound(Uuid),
    /// Another decision on the control change was recorded first.
    #[error("control change {0} was decided concurrently")]
    ControlChangeDecided(Uuid),
    /// A background duty's change made under a lease another replica has
    /// taken since.
    #[error("the {lease} lease was taken over (token {token} is stale): the change is refused")]
    Fenced { lease: &'static str, token: i64 },
    /// What the control change changes moved on since it was proposed.
    #[error("control change {0} is superseded")]
    ControlChangeSuperseded(Uuid),
    #[error("connector {0:?} already exists")]
    ConnectorExists(String),
    #[error("change window {0:?} not found")]
    WindowNotFound(String),
    #[error("change window {0:?} already exists")]
    WindowExists(String),
    #[error("change window {name:?} was changed concurrently (revision {expected} is stale)")]
    WindowConflict { name: String, expected: i64 },
    #[error("the calendar holds {0} change windows, its limit")]
    TooManyWindows(u64),
    #[error("connector {name:?} was changed concurrently (revision {expected} is stale)")]
    ConnectorConflict { name: String, expected: i64 },
    /// A create raced another create with the same request id.
    #[error("request id {0} was used concurrently")]
    RequestIdTaken(String),
    /// The database cannot be reached: connection refused or lost, pool exhausted.
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    #[error("database error: {0}")]
    Database(DbErr),
    /// A row holds a value the code does not know (written by a newer version?).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The operation outlived its budget (or the caller's deadline).
    #[error("database unavailable: no answer within {0:?}")]
    Timeout(Duration),
    /// A connector credential cannot be sealed or opened.
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    /// The SQLite file the server opened was deleted or replaced: writes to
    /// it would be lost, so none are made until a restart reopens the path.
    #[error("database unavailable: {0}")]
    FileReplaced(String),
    /// Too little disk space is left for SQLite to take writes.
    #[error("database unavailable: disk full: {0}")]
    DiskFull(String),
}

impl StoreError {
    /// The database, not the request, is at fault: retrying later may work.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Timeout(_) | StoreError::FileReplaced(_) | StoreError::DiskFull(_)
        )
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) { StoreError::Unavailable(err) } else { StoreError::Database(err) }
    }
}

/// Failures of the database rather than of a query: PostgreSQL down or
/// unreachable, the pool exhausted, or a SQLite file that cannot take writes
/// (disk full, I/O error, locked, read-only, gone). The caller may retry
/// once the database is back; none of these is the request's fault.
fn is_unavailable(err: &DbErr) -> bool {
    let runtime = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    let sea_orm::RuntimeErr::SqlxError(sqlx_err) = runtime else { return false };
    match sqlx_err.as_ref() {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_unavailable_code(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATE classes 08 (connection exception), 53 (insufficient
/// resources: disk full, out of memory, too many connections), 57 (operator
/// intervention: shutdown, terminated backend, statement timeout) and 25006
/// (read-only transaction on a standby); SQLite primary result codes BUSY
/// (5), LOCKED (6), NOMEM (7), READONLY (8), IOERR (10), FULL (13) and
/// CANTOPEN (14), whose extended codes keep the primary code in the low byte.
fn is_unavailable_code(code: &str) -> bool {
    if let Ok(sqlite) = code.parse::<i32>() {
        return matches!(sqlite & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14);
    }
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57") || code == "25006"
}

/// One page of a keyset-paginated listing; `next_after` is the key to pass
/// for the next page, `None` on the last one.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The key of each item, so that a caller can end the page early.
    pub keys: Vec<i64>,
    pub next_after: Option<i64>,
}

impl<T> Page<T> {
    /// Keeps the longest prefix of the page whose items `fit` (at least one
    /// item, so that paging always advances); the rest come on the next page.
    pub fn cut_where(mut self, mut fits: impl FnMut(&T) -> bool) -> Page<T> {
        let keep = self.items.iter().position(|item| !fits(item)).map_or(self.items.len(), |cut| cut.max(1));
        if keep < self.items.len() {
            self.items.truncate(keep);
            self.keys.truncate(keep);
            self.next_after = self.keys.last().copied();
        }
        self
    }

    /// The same page with its items replaced one for one (e.g. by their wire form).
    pub fn with_items<U>(self, items: Vec<U>) -> Page<U> {
        debug_assert_eq!(items.len(), self.keys.len());
        Page { items, keys: self.keys, next_after: self.next_after }
    }

    /// A page from up to `limit + 1` rows read in key order: the extra row
    /// only tells that another page follows, keyed by the last row kept.
    fn from_rows<R>(
        mut rows: Vec<R>,
        limit: u64,
        key: impl Fn(&R) -> i64,
        item: impl FnMut(R) -> StoreResult<T>,
    ) -> StoreResult<Page<T>> {
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let keys: Vec<i64> = rows.iter().map(key).collect();
        let next_after = if more { keys.last().copied() } else { None };
        Ok(Page { items: rows.into_iter().map(item).collect::<StoreResult<_>>()?, keys, next_after })
    }
}

/// Connections of the pool by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub idle: u32,
    pub in_use: u32,
    pub max: u32,
}

/// Database settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://path.db` (created if missing) or `postgres://…`.
    pub url: String,
    /// Pooled connections; `None`: the backend's default ([`StoreConfig::pool_size`]).
    pub max_connections: Option<u32>,
    /// How long a call waits for a connection before failing UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Events buffered per watcher before it is told it fell behind.
    pub event_feed_capacity: usize,
    /// Longest one store operation may take, cut shorter by the served
    /// call's deadline; also PostgreSQL's `statement_timeout`.
    pub operation_timeout: Duration,
    /// Seals connector credentials at rest; storing one without a key is refused.
    pub secret_key: Option<secrets::SecretKey>,
    /// SQLite only: when a commit reaches the disk.
    pub sqlite_durability: SqliteDurability,
}

/// When a SQLite commit is forced to the disk (`PRAGMA synchronous` in WAL mode).
/// Either way a commit survives the server being killed: it is in the
/// write-ahead log, in the kernel's hands, before the call is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteDurability {
    /// `synchronous=FULL`: every commit (one per group-committed batch, so
    /// the sync is shared by every create in it) is synced before it is
    /// answered; a power loss loses nothing acknowledged.
    #[default]
    Full,
    /// `synchronous=NORMAL`: the log is synced at checkpoints, not at every
    /// commit. A power loss or kernel crash can take back the transactions
    /// committed since the last checkpoint (the database stays consistent).
    Normal,
}

impl StoreConfig {
    /// Defaults for `url`: the backend's pool size, 3 s acquire timeout, 5 s
    /// per operation.
    pub fn new(url: impl Into<String>) -> StoreConfig {
        StoreConfig {
            url: url.into(),
            max_connections: None,
            acquire_timeout: Duration::from_secs(3),
            event_feed_capacity: DEFAULT_EVENT_FEED_CAPACITY,
            operation_timeout: Duration::from_secs(5),
            secret_key: None,
            sqlite_durability: SqliteDurability::default(),
        }
    }

    /// The pool size: as set, or 8 on PostgreSQL, whose backends run
    /// statements in parallel, and 4 on SQLite, where writes are one at a
    /// time, Gets and List pages come mostly from memory, and each
    /// connection costs a page cache, prepared statements and a thread
    /// (after 300k creates 4 held 4.5 MiB less RSS than 8, at the same
    /// create, Get and List rates).
    fn pool_size(&self) -> u32 {
        self.max_connections.unwrap_or(if self.url.starts_with("sqlite:") { 4 } else { 8 })
    }
}

/// Keys of the PostgreSQL transaction-scoped advisory locks that serialize
/// what revisions alone cannot.
#[derive(Debug, Clone, Copy)]
#[repr(i64)]
pub(crate) enum Serialized {
    /// Appending events: sequences are then handed out in commit order.
    EventOrder = 0x6575_636f_7261_0001,
    /// Switching the active risk model: exactly one stays active.
    RiskModelActivation = 0x6575_636f_7261_0002,
    /// Migrating: replicas starting together migrate one after the other.
    Migration = 0x6575_636f_7261_0003,
}

/// PostgreSQL: takes the advisory lock `key` until the end of `txn`, so
/// that transactions doing the same thing commit one after the other.
/// SQLite: nothing (its writers are one at a time already).
pub(crate) async fn serialize(txn: &impl ConnectionTrait, key: Serialized) -> StoreResult<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        let sql = format!("SELECT pg_advisory_xact_lock({})", key as i64);
        txn.execute_raw(Statement::from_string(DbBackend::Postgres, sql)).await?;
    }
    Ok(())
}

/// Events the tail reads per query.
const EVENT_TAIL_BATCH: u64 = 500;

/// How often the PostgreSQL event tail looks for events committed by other
/// replicas when nothing woke it.
pub const EVENT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The deployment store.
pub struct Store {
    db: DatabaseConnection,
    /// SQLite only: one writer at a time (PostgreSQL writers run concurrently).
    write_lock: Mutex<()>,
    feed: broadcast::Sender<Arc<StoredEvent>>,
    /// PostgreSQL: wakes the event tail (a local commit, or another replica's).
    tail: Notify,
    /// Deployments as last read, so that Gets and List pages are served
    /// from memory.
    read_cache: ReadCache,
    /// SQLite: every write goes through this process, so the read cache is
    /// never older than the database. PostgreSQL: other replicas write too,
    /// so a kept deployment serves only at the revision the database has.
    cache_is_current: bool,
    /// The keys of List pages (filter, after, size), read once for every
    /// caller asking for the same page at once.
    page_keys: coalesce::Coalesced<deployments::PageQuery, deployments::PageKeys>,
    /// PostgreSQL: the revision checks of Gets, read together.
    revision_reads: Option<revisions::RevisionReads>,
    /// SQLite: the active risk model as last read (every activation goes
    /// through this process and forgets it).
    active_model: Option<Cached<crate::domain::risk::RiskModel>>,
    /// Ring policies as last read, for showing deployments.
    shown_policies: Cached<(Arc<RingPolicies>, std::time::Instant)>,
    /// The change calendar as last read, for showing deployments.
    shown_calendar: Cached<(Arc<crate::domain::calendar::Calendar>, std::time::Instant)>,
    /// The sequence of the last event this process committed (coordination
    /// tells other replicas).
    committed: tokio::sync::watch::Sender<i64>,
    operation_timeout: Duration,
    /// Wakes the health probe as soon as an operation finds the database
    /// unusable, rather than at its next tick.
    faults: Notify,
    /// SQLite: the file opened at start, to notice it being deleted or replaced.
    file: Option<DatabaseFile>,
    secret_key: Option<secrets::SecretKey>,
}

/// A SQLite database file and the identity (device, inode) it had when opened.
#[derive(Debug)]
struct DatabaseFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl DatabaseFile {
    fn identity_of(path: &Path) -> std::io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok((meta.dev(), meta.ino()))
    }

    /// # Errors
    /// [`StoreError::FileReplaced`] when the path is gone or names another file.
    fn check(&self) -> StoreResult<()> {
        match Self::identity_of(&self.path) {
            Ok(identity) if identity == self.identity => Ok(()),
            Ok(_) => Err(StoreError::FileReplaced(format!(
                "{} was replaced by another file since the server opened it; restart the server to use it",
                self.path.display()
            ))),
            Err(err) => Err(StoreError::FileReplaced(format!(
                "{} is no longer there ({err}); restore it and restart the server",
                self.path.display()
            ))),
        }
    }

    /// # Errors
    /// [`StoreError::DiskFull`] when the file system holding the database
    /// has less than [`MIN_FREE_BYTES`] left. (A write probe alone cannot
    /// tell: SQLite rewrites WAL space it already holds even on a full disk.)
    fn check_space(&self) -> StoreResult<()> {
        let dir = self.path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        match rustix::fs::statvfs(dir) {
            Ok(fs) if fs.f_bavail.saturating_mul(fs.f_frsize) < MIN_FREE_BYTES => Err(StoreError::DiskFull(format!(
                "the file system holding {} has {} bytes free",
                self.path.display(),
                fs.f_bavail.saturating_mul(fs.f_frsize)
            ))),
            _ => Ok(()),
        }
    }
}

/// Deployments as last read: dropped when this process saves them, and a
/// read that overlapped any save is not kept (it may predate it), so that,
/// where this process is the only writer, what it holds is never older than
/// the database.
#[derive(Default)]
struct ReadCache(std::sync::Mutex<CachedDeployments>);

#[derive(Default)]
struct CachedDeployments {
    by_id: std::collections::HashMap<Uuid, Deployment>,
    /// Saves so far: a read is kept only if none happened while it ran.
    saves: u64,
}

impl ReadCache {
    fn get(&self, id: Uuid) -> Option<Deployment> {
        self.0.lock().expect("read cache lock").by_id.get(&id).cloned()
    }

    /// Each of `ids` if kept, in order.
    fn get_many(&self, ids: &[Uuid]) -> Vec<Option<Deployment>> {
        let cached = self.0.lock().expect("read cache lock");
        ids.iter().map(|id| cached.by_id.get(id).cloned()).collect()
    }

    /// The count of saves, before a read.
    fn saves(&self) -> u64 {
        self.0.lock().expect("read cache lock").saves
    }

    /// Keeps what a read that started at `saves` found, if nothing was saved since.
    fn keep(&self, deployment: &Deployment, saves: u64) {
        let mut cached = self.0.lock().expect("read cache lock");
        if cached.saves != saves {
            return;
        }
        if cached.by_id.len() >= READ_CACHE_CAPACITY {
            cached.by_id.clear();
        }
        cached.by_id.insert(deployment.id, deployment.clone());
    }

    /// `id` was saved (after its commit).
    fn saved(&self, id: Uuid) {
        let mut cached = self.0.lock().expect("read cache lock");
        cached.saves += 1;
        cached.by_id.remove(&id);
    }
}

/// One value as last read, forgotten when this process changes it; a read
/// that overlapped a change is not kept (it may predate the change).
struct Cached<T>(std::sync::Mutex<(u64, Option<T>)>);

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Cached(std::sync::Mutex::new((0, None)))
    }
}

impl<T: Clone> Cached<T> {
    /// The value if kept, and the count of changes so far (to pass to
    /// [`Cached::keep`] after reading it again).
    fn get(&self) -> (Option<T>, u64) {
        let cached = self.0.lock().expect("cache lock");
        (cached.1.clone(), cached.0)
    }

    fn keep(&self, value: &T, changes: u64) {
        let mut cached = self.0.lock().expect("cache lock");
        if cached.0 == changes {
            cached.1 = Some(value.clone());
        }
    }

    /// The value changed (after its commit).
    fn changed(&self) {
        let mut cached = self.0.lock().expect("cache lock");
        *cached = (cached.0 + 1, None);
    }
}

/// SQLite's page cache per connection, in KiB (its default is 2,000). Gets
/// and List pages are served from the read cache, and pages missed are read
/// from the kernel's cache: after 240k creates a quarter of the default
/// measured the same create and List rates with 12 MiB less RSS.
const SQLITE_PAGE_CACHE_KIB: u32 = 512;

/// Prepared statements each SQLite connection keeps (sqlx's default is
/// 100). A create batch uses about twenty (each multi-row insert shape is
/// one); promotions, the controller and the calendar many more, each
/// prepared statement holding SQLite's compiled program. After the mixed
/// load of `make bench` (creates, Lists, hundreds of rollouts) RSS was 63.6
/// MiB with 100 and 57.5 MiB with 24, at the same create, List and rollout
/// rates.
const SQLITE_STATEMENT_CACHE: usize = 24;

/// Most deployments the read cache holds (it starts over when full).
const READ_CACHE_CAPACITY: usize = 4096;

/// Free space below which a SQLite database counts as full for health.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

// === impl Store ===

impl Store {
    /// Connects (creating a SQLite file if missing) without migrating.
    ///
    /// # Errors
    /// The URL is not a supported database or the database cannot be reached.
    pub async fn connect(config: &StoreConfig) -> StoreResult<Store> {
        let statement_timeout = format!("{}ms", config.operation_timeout.as_millis());
        let synchronous = match config.sqlite_durability {
            SqliteDurability::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
            SqliteDurability::Full => sqlx::sqlite::SqliteSynchronous::Full,
        };
        let mut options = ConnectOptions::new(config.url.clone());
        options
            .max_connections(config.pool_size())
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout)
            .connect_timeout(config.acquire_timeout)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(move |opts| {
                opts.create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(synchronous)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
                    .pragma("cache_size", format!("-{SQLITE_PAGE_CACHE_KIB}"))
                    .statement_cache_capacity(SQLITE_STATEMENT_CACHE)
            })
            .map_sqlx_sqlite_pool_opts(|pool| pool.after_release(|conn, _| Box::pin(reusable(conn))))
            .map_sqlx_postgres_opts(move |opts| opts.options([("statement_timeout", statement_timeout.as_str())]));
        let db = Database::connect(options).await?;
        let file = match db.get_database_backend() {
            DbBackend::Sqlite => sqlite_file(&config.url)?,
            _ => None,
        };
        let (feed, _) = broadcast::channel(config.event_feed_capacity.max(1));
        let backend = db.get_database_backend();
        let revision_reads = (backend == DbBackend::Postgres)
            .then(|| revisions::RevisionReads::start(db.clone(), config.operation_timeout));
        Ok(Store {
            db,
            write_lock: Mutex::new(()),
            feed,
            tail: Notify::new(),
            committed: tokio::sync::watch::Sender::new(0),
            shown_policies: Cached::default(),
            shown_calendar: Cached::default(),
            read_cache: ReadCache::default(),
            cache_is_current: backend == DbBackend::Sqlite,
            page_keys: coalesce::Coalesced::default(),
            revision_reads,
            active_model: (backend == DbBackend::Sqlite).then(Cached::default),
            operation_timeout: config.operation_timeout,
            faults: Notify::new(),
            file,
            secret_key: config.secret_key.clone(),
        })
    }

    /// Applies pending migrations; harmless when there are none.
    ///
    /// # Errors
    /// A migration failed or the database is unreachable.
    pub async fn migrate(&self) -> StoreResult<()> {
        if self.fully_migrated().await {
            return Ok(());
        }
        if self.backend() != DbBackend::Postgres {
            migration::Migrator::up(&self.db, None).await?;
            return Ok(());
        }
        // Replicas starting at once would otherwise create the same tables
        // concurrently; the first migrates, the others then find nothing to do.
        let txn = self.db.begin().await?;
        serialize(&txn, Serialized::Migration).await?;
        migration::Migrator::up(&txn, None).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Whether every migration is recorded as applied, in one query: the
    /// migrator's own check creates its table and reads it several times,
    /// which was a third of a PostgreSQL start. Any doubt (no table yet)
    /// says no, and the migrator decides.
    async fn fully_migrated(&self) -> bool {
        let sql = "SELECT version FROM seaql_migrations";
        let Ok(rows) = self.db.query_all_raw(Statement::from_string(self.backend(), sql)).await else { return false };
        let applied: std::collections::HashSet<String> =
            rows.iter().filter_map(|row| row.try_get::<String>("", "version").ok()).collect();
        migration::Migrator::migrations().iter().all(|m| applied.contains(m.name()))
    }

    /// A cheap round trip proving the database answers.
    ///
    /// # Errors
    /// The database does not answer.
    pub async fn ping(&self) -> StoreResult<()> {
        self.guard(async {
            if let Some(file) = &self.file {
                file.check()?;
                file.check_space()?;
            }
            self.db.execute_raw(Statement::from_string(self.db.get_database_backend(), "SELECT 1")).await?;
            Ok(())
        })
        .await
    }

    /// Proves the database takes a durable write (a full disk or a
    /// read-only file answers reads but not this).
    ///
    /// # Errors
    /// The database cannot be written.
    pub async fn probe_write(&self) -> StoreResult<()> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let backend = self.db.get_database_backend();
            let sql = "UPDATE health_probe SET probed_at = CURRENT_TIMESTAMP WHERE id = 1";
            self.db.execute_raw(Statement::from_string(backend, sql)).await?;
            Ok(())
        })
        .await
    }

    /// Resolves when an operation has found the database unusable since the
    /// last call (the health probe then checks at once).
    pub async fn fault_noticed(&self) {
        self.faults.notified().await;
    }

    /// Runs one store operation within its time budget (and the served
    /// call's deadline), telling the health probe when the database failed.
    async fn guard<T>(&self, operation: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let deadline = crate::deadline::within(self.operation_timeout);
        let result = match tokio::time::timeout_at(deadline, operation).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.operation_timeout)),
        };
        if result.as_ref().is_err_and(StoreError::is_unavailable) {
            self.faults.notify_one();
        }
        result
    }

    /// SQLite: the write lock, taken only while the database file is still
    /// the one opened (a write into a deleted file would be acknowledged and
    /// lost). PostgreSQL: nothing (its writers run concurrently).
    async fn lock_writes(&self) -> StoreResult<Option<tokio::sync::MutexGuard<'_, ()>>> {
        let Some(file) = &self.file else { return Ok(None) };
        let guard = self.write_lock.lock().await;
        file.check()?;
        Ok(Some(guard))
    }

    /// Current connection pool sizes, read from memory (no query).
    pub fn pool_stats(&self) -> PoolStats {
        fn stats<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolStats {
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
            PoolStats { idle, in_use: pool.size().saturating_sub(idle), max: pool.options().get_max_connections() }
        }
        match self.backend() {
            DbBackend::Postgres => stats(self.db.get_postgres_connection_pool()),
            _ => stats(self.db.get_sqlite_connection_pool()),
        }
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Closes the pool (used by graceful shutdown).
    pub async fn close(self) {
        let _ = self.db.close().await;
    }

    /// A receiver of every event committed from now on, in sequence order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.feed.subscribe()
    }

    /// The rows of `query` after sequence `after` (all when `None`) in
    /// sequence order, one more than `limit` ([`Page::from_rows`] uses the
    /// extra one to tell that another page follows).
    async fn rows_after<E: EntityTrait>(
        &self,
        query: Select<E>,
        seq: E::Column,
        after: Option<i64>,
        limit: u64,
    ) -> StoreResult<Vec<E::Model>> {
        let query = match after {
            Some(after) => query.filter(seq.gt(after)),
            None => query,
        };
        Ok(query.order_by_asc(seq).limit(limit + 1).all(&self.db).await?)
    }

    /// A read-only transaction whose statements all see one snapshot, so a
    /// deployment and its ring progress are never read half before and half
    /// after a concurrent save. (SQLite in WAL mode snapshots any transaction;
    /// PostgreSQL needs REPEATABLE READ for that.)
    async fn begin_read(&self) -> StoreResult<DatabaseTransaction> {
        Ok(match self.backend() {
            DbBackend::Postgres => {
                self.db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?
            }
            _ => self.db.begin().await?,
        })
    }

    /// Hands just-committed `events` to the feed: at once on SQLite (under
    /// the write lock, so in sequence order); on PostgreSQL by waking the
    /// tail, which reads them back in sequence order with other replicas'.
    fn publish(&self, events: Vec<StoredEvent>) {
        if let Some(last) = events.last() {
            self.committed.send_replace(last.seq);
        }
        if self.file.is_none() {
            self.tail.notify_one();
            return;
        }
        for event in events {
            // No receiver is fine: nobody is watching.
            let _ = self.feed.send(Arc::new(event));
        }
    }

    /// The sequence of the last event committed through this process, as it
    /// changes (after each commit, never before).
    pub fn committed(&self) -> tokio::sync::watch::Receiver<i64> {
        self.committed.subscribe()
    }

    /// Another replica committed events (the coordination bus says so).
    pub fn events_committed_elsewhere(&self) {
        self.tail.notify_one();
    }

    /// PostgreSQL: feeds the feed from the event table in sequence order,
    /// from the events committed after sequence `after` (read before
    /// serving starts), until `stop`. Woken by local commits and
    /// [`Store::events_committed_elsewhere`], and every
    /// [`EVENT_POLL_INTERVAL`] in case a wake-up was lost. SQLite: returns.
    pub async fn tail_events(self: Arc<Self>, mut after: i64, stop: tokio_util::sync::CancellationToken) {
        if self.file.is_some() {
            return;
        }
        loop {
            match self.list_events(None, Some(after), EVENT_TAIL_BATCH).await {
                Ok(page) => {
                    for event in page.items {
                        after = event.seq;
                        let _ = self.feed.send(Arc::new(event));
                    }
                    if page.next_after.is_some() {
                        continue;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "event tail: reading new events"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.tail.notified() => {}
                () = tokio::time::sleep(EVENT_POLL_INTERVAL) => {}
            }
        }
    }
}

/// Whether a SQLite connection going back to the pool may be used again:
/// not when it is still inside a transaction, which happens when a failed
/// statement (disk full, I/O error) made SQLite roll back on its own and the
/// driver's ROLLBACK then failed. Reused, such a connection would nest the
/// next transaction in a savepoint of one that never commits: acknowledged
/// writes that are never durable. (PostgreSQL has no such state: a broken
/// connection fails sqlx's own check on release.)
async fn reusable(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    // A round trip first, so that a rollback queued on drop has been applied:
    // read transactions left without commit (an early return) are clean then,
    // and need no new connection.
    conn.ping().await?;
    let clean = !conn.is_in_transaction();
    if !clean {
        tracing::warn!("closing a database connection left inside a failed transaction");
    }
    Ok(clean)
}

/// The file behind a SQLite URL (none for an in-memory database).
fn sqlite_file(url: &str) -> StoreResult<Option<DatabaseFile>> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|err| StoreError::Database(DbErr::Custom(format!("bad SQLite URL: {err}"))))?;
    let path = options.get_filename().to_path_buf();
    let name = path.to_string_lossy();
    // sqlx names an in-memory database `file:sqlx-in-memory-<n>`.
    if name.is_empty() || name.contains(":memory:") || name.starts_with("file:sqlx-in-memory-") {
        return Ok(None);
    }
    let identity = DatabaseFile::identity_of(&path)
        .map_err(|err| StoreError::FileReplaced(format!("{}: {err}", path.display())))?;
    Ok(Some(DatabaseFile { path, identity }))
}

pub(crate) fn parse<T>(value: &str, what: &str, parse: impl Fn(&str) -> Option<T>) -> StoreResult<T> {
    parse(value).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {value:?}")))
}

pub(crate) fn parse_uuid(value: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(value).map_err(|_| StoreError::Corrupt(format!("bad uuid {value:?}")))
}
