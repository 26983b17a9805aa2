//! What the writer does line by line: look an answer up in the cache, and
//! write a finished line's rows (its cached answer, its request and
//! attempts, the use of a cached answer and the pauses learned).

use rusqlite::{params, CachedStatement, Connection, OptionalExtension};

use super::{CachedAnswer, LatencyFold, LineRecord, Store, StoreError};
use crate::core::cachekey::Key;

const LOOKUP: &str =
    "SELECT model, response, content, cost_usd, prompt_tokens, completion_tokens, score, created_at
     FROM cache WHERE key = ?1 AND created_at >= ?2";
const INSERT_CACHE: &str = "INSERT OR REPLACE INTO cache
     (key, model, response, content, cost_usd, prompt_tokens, completion_tokens, score, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const INSERT_ATTEMPT: &str =
    "INSERT INTO attempts (ts, run_id, line, model, status, ok, cached, latency_ms, prompt_tokens,
     completion_tokens, cost_usd, priority, score, error_type, ttft_ms, upstream)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
const INSERT_REQUEST: &str =
    "INSERT INTO requests (ts, run_id, line, request_id, model, ok, cached, latency_ms, cost_usd,
     prompt_tokens, completion_tokens, priority, score, attempts, error_type, key_name, rid, task, upstream,
     charged_usd)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";
const ADD_KEY_DAY: &str = "INSERT INTO key_days (name, day, cost_usd) VALUES (?1, ?2, ?3)
     ON CONFLICT (name, day) DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd";
const MARK_USED: &str = "UPDATE cache SET used_at = ?2 WHERE key = ?1";

/// The statements of every line, each taken from the connection's statement
/// cache the first time a transaction needs it and kept for the rest of it:
/// a lookup in that cache hashes the statement's whole text, and cost a
/// fifth of the writer's time when done for every row.
#[derive(Default)]
pub struct Statements<'c> {
    lookup: Option<CachedStatement<'c>>,
    cache: Option<CachedStatement<'c>>,
    attempts: Option<CachedStatement<'c>>,
    requests: Option<CachedStatement<'c>>,
    used: Option<CachedStatement<'c>>,
    key_days: Option<CachedStatement<'c>>,
}

/// The statement in `slot`, prepared (or taken from the cache) if need be.
fn held<'s, 'c>(
    slot: &'s mut Option<CachedStatement<'c>>,
    conn: &'c Connection,
    sql: &str,
) -> rusqlite::Result<&'s mut CachedStatement<'c>> {
    if slot.is_none() {
        *slot = Some(conn.prepare_cached(sql)?);
    }
    Ok(slot.as_mut().expect("just filled"))
}

impl Store {
    /// A cached answer for `key` created at or after `min_created_at`.
    pub fn lookup(
        &self,
        key: &Key,
        min_created_at: i64,
    ) -> Result<Option<CachedAnswer>, StoreError> {
        self.lookup_held(key, min_created_at, &mut Statements::default())
    }

    /// [`Store::lookup`] with a transaction's `statements`.
    pub fn lookup_held<'c>(
        &'c self,
        key: &Key,
        min_created_at: i64,
        statements: &mut Statements<'c>,
    ) -> Result<Option<CachedAnswer>, StoreError> {
        Ok(held(&mut statements.lookup, &self.conn, LOOKUP)?
            .query_row(params![&key.0[..], min_created_at], |r| {
                Ok(CachedAnswer {
                    model: r.get(0)?,
                    response: r.get(1)?,
                    content: r.get(2)?,
                    cost_usd: r.get(3)?,
                    prompt_tokens: r.get(4)?,
                    completion_tokens: r.get(5)?,
                    score: r.get(6)?,
                    created_at: r.get(7)?,
                })
            })
            .optional()?)
    }

    /// Writes one finished line (call inside a transaction for speed).
    pub fn write_line(&self, rec: &LineRecord) -> Result<(), StoreError> {
        let mut latencies = LatencyFold::default();
        self.write_line_folded(rec, &mut latencies, &mut Statements::default())?;
        self.write_latencies(&mut latencies)
    }

    /// Like [`Store::write_line`], but the latencies of successful attempts
    /// are only added to `latencies`; [`Store::write_latencies`] writes them,
    /// one `model_stats` update per model for any number of lines. The
    /// statements are taken from `statements`, which a transaction's lines share.
    pub fn write_line_folded<'c>(
        &'c self,
        rec: &LineRecord,
        latencies: &mut LatencyFold,
        statements: &mut Statements<'c>,
    ) -> Result<(), StoreError> {
        let priority = rec.priority.as_deref().unwrap_or(&self.priority);
        if let Some(c) = &rec.cache {
            let a = &c.answer;
            held(&mut statements.cache, &self.conn, INSERT_CACHE)?.execute(params![
                &c.key.0[..],
                a.model,
                a.response,
                a.content,
                a.cost_usd,
                a.prompt_tokens,
                a.completion_tokens,
                a.score,
                a.created_at
            ])?;
        }
        for a in &rec.attempts {
            held(&mut statements.attempts, &self.conn, INSERT_ATTEMPT)?.execute(params![
                a.ts,
                self.run_id,
                rec.request.as_ref().map_or(0, |r| r.line as i64),
                a.model,
                a.status,
                a.ok,
                a.cached,
                a.latency_ms,
                a.prompt_tokens,
                a.completion_tokens,
                a.cost_usd,
                priority,
                a.score,
                a.error_type,
                a.ttft_ms,
                self.upstream
            ])?;
            if !a.cached {
                latencies.add(a);
            }
        }
        if let Some(r) = &rec.request {
            held(&mut statements.requests, &self.conn, INSERT_REQUEST)?.execute(params![
                r.ts,
                self.run_id,
                r.line as i64,
                r.request_id,
                r.model,
                r.ok,
                r.cached,
                r.latency_ms,
                r.cost_usd,
                r.prompt_tokens,
                r.completion_tokens,
                priority,
                r.score,
                r.attempts,
                r.error_type,
                r.key.as_deref(),
                r.rid.as_deref(),
                r.task.as_deref(),
                self.upstream,
                r.charged_usd
            ])?;
            // What the key's budget was charged, estimates included, so
            // that a restart starts from what it had spent.
            let charged = r.charged_usd.or(r.cost_usd).filter(|c| *c > 0.0);
            if let (Some(key), Some(cost)) = (&r.key, charged) {
                held(&mut statements.key_days, &self.conn, ADD_KEY_DAY)?.execute(params![
                    &**key,
                    r.ts.div_euclid(86_400_000),
                    cost
                ])?;
            }
        }
        if let Some(key) = &rec.hit {
            held(&mut statements.used, &self.conn, MARK_USED)?
                .execute(params![&key.0[..], rec.request.as_ref().map(|r| r.ts)])?;
        }
        for (model, until, why) in &rec.cooldowns {
            // The later pause holds, and says why.
            self.conn
                .prepare_cached(
                    "INSERT INTO cooldowns (upstream, model, until_ms, reason)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (upstream, model) DO UPDATE SET
                       reason = CASE WHEN excluded.until_ms > until_ms THEN excluded.reason ELSE reason END,
                       until_ms = max(until_ms, excluded.until_ms)",
                )?
                .execute(params![self.upstream, model, until, why.name()])?;
        }
        Ok(())
    }
}
