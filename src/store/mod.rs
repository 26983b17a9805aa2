//! The SQLite store: response cache, metrics, model statistics, cooldowns
//! and the catalogue copy.
//!
//! One file, WAL mode, a busy timeout, created with mode 0600, migrated by
//! `PRAGMA user_version`. Several llmroute processes may share it. During a
//! run, every write goes through one [`writer::Writer`] thread, which groups
//! them into few transactions.

pub mod flights;
mod keys;
pub mod learned;
pub mod ports;
mod rows;
pub mod schema;
mod stats;
pub mod writer;

pub use rows::Statements;
pub use stats::{LatencyFold, MODEL_ERROR_SQL};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

pub use crate::core::health::ModelStat;

/// How long a write waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the store at {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("the store at {path} has schema version {found}, newer than this llmroute knows ({known}); upgrade llmroute")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the store at {path} is read-only here and was made by an older llmroute: open it once where it can be written, so that it is upgraded")]
    NeedsUpgrade { path: PathBuf },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
}

pub use crate::engine::ports::{
    Answer as CachedAnswer, AttemptRow, CacheEntry, Record as LineRecord, RequestRow,
};

pub use crate::engine::now_ms;

/// `$XDG_DATA_HOME/llmroute/llmroute.db` (`~/.local/share/...` by default).
pub fn default_path() -> Result<PathBuf, String> {
    use etcetera::BaseStrategy;
    let dirs = etcetera::choose_base_strategy()
        .map_err(|e| format!("cannot find the home directory: {e}"))?;
    Ok(dirs.data_dir().join("llmroute").join("llmroute.db"))
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    run_id: String,
    priority: String,
    /// The API whose health this store reads and writes (see
    /// [`Store::set_upstream`]).
    upstream: String,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: path.to_path_buf(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                create_private_dir(dir)
                    .map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        create_private_file(path).map_err(|e| open_err(e.to_string()))?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_err(e.to_string()))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            run_id: String::new(),
            priority: String::new(),
            upstream: String::new(),
        };
        // Switching a new file to WAL and migrating it take an exclusive lock
        // on top of a shared one. When several processes open a fresh store at
        // once, SQLite answers SQLITE_BUSY at once instead of calling the busy
        // handler (waiting could deadlock), so the whole step is retried here.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(2);
        loop {
            match store.prepare() {
                Err(StoreError::Sql(e)) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    // Jitter by process id so that the contenders spread out.
                    let jitter = Duration::from_micros(u64::from(std::process::id() % 997));
                    std::thread::sleep(pause + jitter);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(StoreError::Sql(e)) => return Err(open_err(describe(&e))),
                other => return other.map(|()| store),
            }
        }
    }

    /// Opens an existing store to read only, as it is (no migration), for
    /// a reader beside a run's writer.
    pub fn open_reader(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_millis(200))?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            run_id: String::new(),
            priority: String::new(),
            upstream: String::new(),
        })
    }

    /// Opens an existing store to read only, for a command that writes
    /// nothing, when it cannot be opened to write: its schema must be this
    /// llmroute's (a migration would need a write).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let version = |s: &Store| -> rusqlite::Result<i64> {
            s.conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        };
        let plain = Store::open_reader(path).and_then(|s| Ok((version(&s)?, s)));
        let (found, store) = match plain {
            Ok(found) => found,
            // A store in WAL mode cannot be read where its shared-memory
            // index cannot be made (a read-only directory) — unless the
            // file is taken as immutable, which is true while no write-ahead
            // log is pending: then nobody is writing it.
            Err(e) if !wal_pending(path) => {
                let s = Store::open_immutable(path).map_err(|_| e)?;
                (version(&s)?, s)
            }
            Err(e) => {
                return Err(StoreError::Open {
                    path: path.to_path_buf(),
                    message: match &e {
                        StoreError::Sql(e) => describe(e),
                        other => other.to_string(),
                    },
                })
            }
        };
        let known = schema::MIGRATIONS.len() as i64;
        match found.cmp(&known) {
            std::cmp::Ordering::Equal => Ok(store),
            std::cmp::Ordering::Greater => Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                known,
            }),
            std::cmp::Ordering::Less => Err(StoreError::NeedsUpgrade {
                path: path.to_path_buf(),
            }),
        }
    }

    /// A store in memory, migrated, that vanishes with the process: for a
    /// dry run that cannot create its file.
    pub fn in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        let mut store = Store {
            conn,
            path: PathBuf::from(":memory:"),
            run_id: String::new(),
            priority: String::new(),
            upstream: String::new(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens the file as immutable: no locks, no write-ahead log.
    fn open_immutable(path: &Path) -> Result<Store, StoreError> {
        let absolute = std::path::absolute(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let uri = url::Url::from_file_path(&absolute).map_err(|()| StoreError::Open {
            path: path.to_path_buf(),
            message: "not a file path".into(),
        })?;
        let conn = Connection::open_with_flags(
            format!("{uri}?immutable=1"),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            run_id: String::new(),
            priority: String::new(),
            upstream: String::new(),
        })
    }

    /// WAL mode, pragmas and migrations: what every open does after connecting.
    fn prepare(&mut self) -> Result<(), StoreError> {
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path: self.path.clone(),
                message: format!("cannot switch to WAL mode (journal mode is {mode})"),
            });
        }
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        self.migrate()
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = schema::MIGRATIONS.len() as i64;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known,
            });
        }
        if version == known {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while this one waited for the lock.
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(|e| StoreError::Open {
                path: self.path.clone(),
                message: format!("migration {} failed: {}", i + 1, describe(&e)),
            })?;
        }
        tx.pragma_update(None, "user_version", known)?;
        tx.commit()?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A transaction that reads and then writes, holding the write lock
    /// from its start: a read transaction that another process writes
    /// under cannot become a write one (SQLite refuses it at once, without
    /// waiting), while this one waits its turn for the busy timeout.
    pub fn write_transaction(&self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        Ok(rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?)
    }

    /// Sets the API whose model health (averages, pauses) this store reads
    /// and writes, and that its attempts are labelled with: its identity,
    /// as `upstream::identity` gives it. Health is kept per upstream and
    /// model, so what one API taught never holds back another.
    pub fn set_upstream(&mut self, identity: &str) {
        self.upstream = identity.to_string();
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Forgets the learned health (averages and pauses) of this store's
    /// upstream: of `models`, or of every model when `models` is empty.
    /// Returns the models whose health was forgotten.
    pub fn reset_health(&self, models: &[String]) -> Result<Vec<String>, StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let mut forgotten = std::collections::BTreeSet::new();
        for table in ["model_stats", "cooldowns"] {
            let mut stmt = tx.prepare(&format!(
                "DELETE FROM {table} WHERE upstream = ?1 AND (?2 IS NULL OR model = ?2) RETURNING model"
            ))?;
            let wanted: Vec<Option<&str>> = match models.is_empty() {
                true => vec![None],
                false => models.iter().map(|m| Some(m.as_str())).collect(),
            };
            for m in wanted {
                let rows = stmt.query_map(params![self.upstream, m], |r| r.get::<_, String>(0))?;
                for row in rows {
                    forgotten.insert(row?);
                }
            }
        }
        tx.commit()?;
        Ok(forgotten.into_iter().collect())
    }

    /// Sets what rows written through this store are labelled with.
    pub fn set_run(&mut self, run_id: &str, priority: &str) {
        self.run_id = run_id.to_string();
        self.priority = priority.to_string();
    }

    /// The stored catalogue for `base_url`: (fetched at unix ms, compact JSON).
    pub fn catalogue(&self, base_url: &str) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT fetched_at, body FROM catalogue WHERE base_url = ?1",
                [base_url],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn put_catalogue(
        &self,
        base_url: &str,
        fetched_at: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO catalogue (base_url, fetched_at, body) VALUES (?1, ?2, ?3)",
            params![base_url, fetched_at, body],
        )?;
        Ok(())
    }

    /// Cooldowns still in force at `now` (model -> until unix ms).
    pub fn cooldowns(&self, now: i64) -> Result<HashMap<String, i64>, StoreError> {
        Ok(self
            .cooldowns_and_why(now)?
            .into_iter()
            .map(|(m, (until, _))| (m, until))
            .collect())
    }

    /// The pauses in force at `now`: each model's until (unix ms) and why
    /// (`retry-after`, `circuit`).
    pub fn cooldowns_and_why(
        &self,
        now: i64,
    ) -> Result<HashMap<String, (i64, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT model, until_ms, coalesce(reason, 'retry-after') FROM cooldowns WHERE upstream = ?1 AND until_ms > ?2",
        )?;
        let rows = stmt.query_map(params![self.upstream, now], |r| {
            Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// What `llmroute cache stats` shows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CacheStats {
    pub entries: i64,
    /// Bytes of cached responses and contents.
    pub bytes: i64,
    /// Unix ms of the oldest and newest entry.
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
    /// Lines in the window that were looked up (all but those refused as
    /// invalid), and how many the cache answered.
    pub lookups: i64,
    pub hits: i64,
}

impl Store {
    /// Whether the store answers a query, in constant time (it reads the
    /// schema, not a table), for a health check.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(())
    }

    /// Cache size and the hit rate of lines routed since `since` (unix ms).
    pub fn cache_stats(&self, since: Option<i64>) -> Result<CacheStats, StoreError> {
        let (entries, bytes, oldest, newest) = self.conn.query_row(
            "SELECT count(*), coalesce(sum(length(response) + coalesce(length(content), 0)), 0),
                    min(created_at), max(created_at)
             FROM cache",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let (lookups, hits) = self.conn.query_row(
            // A line refused as invalid never reached the cache.
            "SELECT count(*), coalesce(sum(cached), 0) FROM requests
             WHERE ts >= ?1 AND coalesce(error_type, '') <> ?2",
            params![
                since.unwrap_or(i64::MIN),
                crate::core::failure::error_type::INVALID_INPUT
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(CacheStats {
            entries,
            bytes,
            oldest,
            newest,
            lookups,
            hits,
        })
    }

    /// Removes cached answers created before `before` (unix ms); all with `None`.
    pub fn cache_remove(&self, before: Option<i64>) -> Result<usize, StoreError> {
        Ok(match before {
            Some(t) => self
                .conn
                .execute("DELETE FROM cache WHERE created_at < ?1", [t])?,
            None => self.conn.execute("DELETE FROM cache", [])?,
        })
    }

    /// Removes the least recently used cached answers (by when last used,
    /// else when made) until the rest hold at most `max_bytes`, counted as
    /// [`Store::cache_stats`] counts them. Returns the answers removed.
    pub fn cache_shrink(&self, max_bytes: u64) -> Result<usize, StoreError> {
        let max = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let total: i64 = self.conn.query_row(
            "SELECT coalesce(sum(length(response) + coalesce(length(content), 0)), 0) FROM cache",
            [],
            |r| r.get(0),
        )?;
        if total <= max {
            return Ok(0);
        }
        let mut over = total - max;
        let mut doomed = Vec::new();
        {
            let mut stmt = self.conn.prepare(
                "SELECT id, length(response) + coalesce(length(content), 0) FROM cache
                 ORDER BY coalesce(used_at, created_at), id",
            )?;
            let mut rows = stmt.query([])?;
            while over > 0 {
                let Some(row) = rows.next()? else { break };
                doomed.push(row.get::<_, i64>(0)?);
                over -= row.get::<_, i64>(1)?;
            }
        }
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        {
            let mut del = tx.prepare_cached("DELETE FROM cache WHERE id = ?1")?;
            for id in &doomed {
                del.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(doomed.len())
    }

    /// Deletes metrics rows older than `before` (unix ms), at most `limit`
    /// of each table, so that a run never spends long on it; the next run
    /// takes the rest. Expired cooldowns go too. Returns the rows deleted.
    pub fn prune_metrics(&self, before: i64, limit: usize) -> Result<usize, StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let mut n = 0;
        for table in ["attempts", "requests"] {
            n += tx.execute(
                &format!("DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE ts < ?1 ORDER BY ts LIMIT ?2)"),
                params![before, limit as i64],
            )?;
        }
        tx.execute("DELETE FROM cooldowns WHERE until_ms < ?1", [now_ms()])?;
        tx.commit()?;
        Ok(n)
    }
}

/// Whether the store at `path` has a write-ahead log with frames in it.
fn wal_pending(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).is_ok_and(|m| m.len() > 0)
}

/// Whether an error means another connection holds a lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A readable cause for the common ways a store cannot be used.
pub(crate) fn describe(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(NotADatabase) => "the file is not an SQLite database (or is corrupt)".into(),
        Some(DatabaseCorrupt) => "the database file is corrupt".into(),
        Some(ReadOnly) => "the database is read-only".into(),
        Some(CannotOpen) => "the database file cannot be opened".into(),
        Some(DiskFull) => "the disk is full".into(),
        _ => e.to_string(),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates the database file with mode 0600 if it does not exist yet, so
/// SQLite (which gives its WAL and shm files the database's mode) never
/// makes it world-readable.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cachekey::Key;

    fn entry(key: u8, created_at: i64) -> CacheEntry {
        CacheEntry {
            key: Key([key; 32]),
            answer: CachedAnswer {
                model: "m/a".into(),
                response: "{\"choices\":[]}".into(),
                content: Some("hi".into()),
                cost_usd: Some(0.001),
                prompt_tokens: Some(3),
                completion_tokens: Some(4),
                score: Some(0.5),
                created_at,
            },
        }
    }

    /// An attempt row at `ts` on model `m`, nothing else known.
    fn attempt(ts: i64, ok: bool, cached: bool) -> AttemptRow {
        AttemptRow {
            ts,
            model: "m".into(),
            status: None,
            ok,
            cached,
            latency_ms: None,
            prompt_tokens: None,
            completion_tokens: None,
            cost_usd: None,
            score: None,
            error_type: None,
            ttft_ms: None,
        }
    }

    fn rows(s: &Store, table: &str) -> i64 {
        s.conn()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    fn user_version(s: &Store) -> i64 {
        s.conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/s.db");
        drop(Store::open(&path).unwrap());
        let s = Store::open(&path).unwrap();
        assert_eq!(user_version(&s), schema::MIGRATIONS.len() as i64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn health_of_a_version_5_store_moves_to_the_default_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let conn = Connection::open(&path).unwrap();
            for m in &schema::MIGRATIONS[..5] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "user_version", 5).unwrap();
            conn.execute_batch(
                "INSERT INTO model_stats (model, ewma_ms, samples, updated_at, tries)
                   VALUES ('m', 120.0, 4, 9, 4);
                 INSERT INTO cooldowns (model, until_ms) VALUES ('m', 9999999999999);",
            )
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        s.set_upstream("http://127.0.0.1:1/v1");
        assert!(s.model_stats().unwrap().is_empty());
        s.set_upstream("https://openrouter.ai/api/v1");
        assert_eq!(s.model_stats().unwrap()["m"].ewma_ms, 120.0);
        assert!(s.cooldowns(0).unwrap().is_empty(), "pauses are dropped");
        assert_eq!(s.reset_health(&[]).unwrap(), vec!["m".to_string()]);
        assert!(s.model_stats().unwrap().is_empty());
    }

    #[test]
    fn migrates_a_version_1_cache_and_keeps_its_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.execute(
                "INSERT INTO cache (key, model, response, content, created_at)
                 VALUES (?1, 'm', '{\"choices\":[]}', 'hello', 5)",
                [&[9u8; 32][..]],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(user_version(&s), schema::MIGRATIONS.len() as i64);
        let hit = s
            .lookup(&Key([9; 32]), 0)
            .unwrap()
            .expect("the answer survives");
        assert_eq!(
            (hit.model.as_str(), hit.content.as_deref()),
            ("m", Some("hello"))
        );
        // The new table is a rowid table: the same key replaces, never duplicates.
        let without_rowid: String = s
            .conn()
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'cache'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            !without_rowid.to_uppercase().contains("WITHOUT ROWID"),
            "{without_rowid}"
        );
        let e = entry(9, 7);
        s.write_line(&LineRecord {
            cache: Some(e),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(rows(&s, "cache"), 1);
    }

    #[test]
    fn refuses_a_newer_schema_and_a_non_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = Store::open(&path).unwrap();
        s.conn().pragma_update(None, "user_version", 999).unwrap();
        drop(s);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 999, .. })
        ));
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
        let err = Store::open(&junk)
            .err()
            .expect("junk is refused")
            .to_string();
        assert!(err.contains("not an SQLite database"), "{err}");
    }

    #[test]
    fn cache_round_trip_and_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let e = entry(1, 1_000);
        s.write_line(&LineRecord {
            cache: Some(e.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.lookup(&Key([1; 32]), 0).unwrap(), Some(e.answer));
        assert_eq!(
            s.lookup(&Key([1; 32]), 1_001).unwrap(),
            None,
            "older than the TTL"
        );
        assert_eq!(s.lookup(&Key([2; 32]), 0).unwrap(), None);
    }

    #[test]
    fn successful_attempts_feed_the_latency_average() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let attempt = |ms: f64, ok: bool| AttemptRow {
            model: "m/a".into(),
            status: Some(if ok { 200 } else { 500 }),
            latency_ms: Some(ms),
            ..attempt(1, ok, false)
        };
        let rec = LineRecord {
            attempts: vec![
                attempt(100.0, true),
                attempt(5000.0, false),
                attempt(200.0, true),
            ],
            ..Default::default()
        };
        s.write_line(&rec).unwrap();
        let stats = s.model_stats().unwrap();
        let expect = ModelStat::first(100.0).update(200.0);
        assert_eq!(stats["m/a"].samples, 2);
        assert!((stats["m/a"].ewma_ms - expect.ewma_ms).abs() < 1e-9);
        assert_eq!(rows(&s, "attempts"), 3);
    }

    #[test]
    fn latencies_folded_per_transaction_match_updates_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let one_by_one = Store::open(&dir.path().join("a.db")).unwrap();
        let folded = Store::open(&dir.path().join("b.db")).unwrap();
        let line = |model: &str, ms: f64| LineRecord {
            attempts: vec![AttemptRow {
                model: model.into(),
                latency_ms: Some(ms),
                completion_tokens: Some((ms / 10.0) as i64),
                ..attempt(1, true, false)
            }],
            ..Default::default()
        };
        // m/a has a row before the batch; m/b gets its first in it.
        one_by_one.write_line(&line("m/a", 50.0)).unwrap();
        folded.write_line(&line("m/a", 50.0)).unwrap();
        let batch = [
            line("m/a", 120.0),
            line("m/b", 30.0),
            line("m/a", 80.0),
            line("m/b", 900.0),
            line("m/a", 10.0),
        ];
        let mut latencies = LatencyFold::default();
        let mut statements = Statements::default();
        for rec in &batch {
            one_by_one.write_line(rec).unwrap();
            folded
                .write_line_folded(rec, &mut latencies, &mut statements)
                .unwrap();
        }
        drop(statements);
        folded.write_latencies(&mut latencies).unwrap();
        let (want, got) = (
            one_by_one.model_stats().unwrap(),
            folded.model_stats().unwrap(),
        );
        let answers = |ms: &[f64]| {
            ms.iter().fold(ModelStat::default(), |s, ms| {
                s.answered(*ms, Some((ms / 10.0) as i64)).tried(false, 1)
            })
        };
        let expect_a = answers(&[50.0, 120.0, 80.0, 10.0]);
        let expect_b = answers(&[30.0, 900.0]);
        for (model, expect) in [("m/a", expect_a), ("m/b", expect_b)] {
            for got in [&want[model], &got[model]] {
                let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
                let (f, e) = (got.fit, expect.fit);
                assert_eq!((f.n, got.tries), (e.n, expect.tries), "{model}");
                assert!(
                    close(f.x, e.x) && close(f.xx, e.xx) && close(f.xy, e.xy) && close(f.y, e.y),
                    "{model}: {f:?} {e:?}"
                );
                assert!(close(got.error_rate, expect.error_rate), "{model}");
            }
            assert_eq!(want[model].samples, expect.samples, "{model}");
            assert_eq!(got[model].samples, expect.samples, "{model}");
            assert!(
                (want[model].ewma_ms - expect.ewma_ms).abs() < 1e-9,
                "{model}"
            );
            assert!(
                (got[model].ewma_ms - expect.ewma_ms).abs() < 1e-9,
                "{model}"
            );
        }
        assert!(latencies.is_empty(), "written and cleared");
    }

    #[test]
    fn the_latest_answers_come_oldest_first_and_not_from_before_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let answer = |ts: i64, ms: f64, ok: bool| LineRecord {
            attempts: vec![AttemptRow {
                model: "m/a".into(),
                latency_ms: Some(ms),
                ..attempt(ts, ok, false)
            }],
            ..Default::default()
        };
        for (ts, ms) in [(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0)] {
            s.write_line(&answer(ts, ms, true)).unwrap();
        }
        // A failure is no answer.
        s.write_line(&answer(5, 5_000.0, false)).unwrap();
        assert_eq!(s.latest_latencies(3).unwrap()["m/a"], [20.0, 30.0, 40.0]);
        assert_eq!(s.latest_latencies(64).unwrap()["m/a"].len(), 4);
        // Forgotten, then one answer since: only that one.
        s.reset_health(&[]).unwrap();
        assert!(s.latest_latencies(64).unwrap().is_empty());
        s.write_line(&answer(6, 60.0, true)).unwrap();
        assert_eq!(s.latest_latencies(64).unwrap()["m/a"], [60.0]);
    }

    #[test]
    fn metrics_are_pruned_in_bounded_steps() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        for ts in [1, 2, 3, 100] {
            s.write_line(&LineRecord {
                attempts: vec![attempt(ts, true, true)],
                ..Default::default()
            })
            .unwrap();
        }
        assert_eq!(s.prune_metrics(50, 2).unwrap(), 2);
        assert_eq!(s.prune_metrics(50, 2).unwrap(), 1);
        assert_eq!(s.prune_metrics(50, 2).unwrap(), 0);
        assert_eq!(rows(&s, "attempts"), 1);
    }

    #[test]
    fn cache_stats_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        for (k, at) in [(1u8, 1_000), (2, 2_000), (3, 3_000)] {
            s.write_line(&LineRecord {
                cache: Some(entry(k, at)),
                ..Default::default()
            })
            .unwrap();
        }
        let st = s.cache_stats(None).unwrap();
        assert_eq!(
            (st.entries, st.oldest, st.newest),
            (3, Some(1_000), Some(3_000))
        );
        assert_eq!(st.bytes, 3 * ("{\"choices\":[]}".len() as i64 + 2));
        assert_eq!(s.cache_remove(Some(2_500)).unwrap(), 2);
        assert_eq!(s.cache_remove(None).unwrap(), 1);
        assert_eq!(s.cache_stats(None).unwrap().entries, 0);
    }

    #[test]
    fn a_line_refused_as_invalid_is_no_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let row = |cached: bool, error_type: Option<&'static str>| LineRecord {
            request: Some(RequestRow {
                ts: 1,
                line: 1,
                request_id: None,
                model: None,
                ok: error_type.is_none(),
                cached,
                latency_ms: 1.0,
                cost_usd: None,
                prompt_tokens: None,
                completion_tokens: None,
                score: None,
                attempts: 0,
                error_type,
                key: None,
                rid: None,
                task: None,
                charged_usd: None,
            }),
            ..Default::default()
        };
        for r in [
            row(true, None),
            row(false, None),
            row(false, Some("invalid_input")),
        ] {
            s.write_line(&r).unwrap();
        }
        let st = s.cache_stats(None).unwrap();
        assert_eq!((st.lookups, st.hits), (2, 1));
    }

    #[test]
    fn cooldowns_keep_the_later_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        use crate::engine::ports::Pause;
        let pause = |until, why| {
            s.write_line(&LineRecord {
                cooldowns: vec![("m/a".into(), until, why)],
                ..Default::default()
            })
            .unwrap();
            s.cooldowns_and_why(1_000).unwrap()["m/a"].clone()
        };
        assert_eq!(pause(5_000, Pause::Circuit), (5_000, "circuit".into()));
        // The later pause holds, and says why.
        assert_eq!(pause(3_000, Pause::RateLimit), (5_000, "circuit".into()));
        assert_eq!(
            pause(7_000, Pause::RateLimit),
            (7_000, "retry-after".into())
        );
        assert_eq!(s.cooldowns(1_000).unwrap()["m/a"], 7_000);
        assert!(s.cooldowns(8_000).unwrap().is_empty());
    }
}
