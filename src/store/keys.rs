//! Client keys in the store: each token only as its SHA-256, with the
//! key's policy as JSON; and what each key has spent.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::core::keys::{KeyRecord, Policy};

impl Store {
    /// Keeps a key, replacing a revoked one of the same name. Returns false
    /// when a key of that name is live (not revoked).
    pub fn put_key(&self, key: &KeyRecord) -> Result<bool, StoreError> {
        let policy = serde_json::to_string(&key.policy).expect("a policy serialises");
        let n = self.conn.execute(
            "INSERT INTO keys (name, token_sha256, policy, created_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256,
                 policy = excluded.policy, created_at = excluded.created_at,
                 revoked_at = excluded.revoked_at
             WHERE keys.revoked_at IS NOT NULL",
            params![
                key.name,
                key.token_sha256,
                policy,
                key.created_at_ms,
                key.revoked_at_ms
            ],
        )?;
        Ok(n == 1)
    }

    /// Keeps a key as it is elsewhere (in Redis), whatever is here.
    pub fn mirror_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let policy = serde_json::to_string(&key.policy).expect("a policy serialises");
        self.conn.execute(
            "INSERT OR REPLACE INTO keys (name, token_sha256, policy, created_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                key.name,
                key.token_sha256,
                policy,
                key.created_at_ms,
                key.revoked_at_ms
            ],
        )?;
        Ok(())
    }

    /// Every key, revoked ones too, by name. A row whose policy does not
    /// read (written by a newer llmroute) is skipped with its name in `bad`.
    pub fn keys(&self) -> Result<(Vec<KeyRecord>, Vec<String>), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, token_sha256, policy, created_at, revoked_at FROM keys ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?;
        let (mut keys, mut bad) = (Vec::new(), Vec::new());
        for row in rows {
            let (name, token_sha256, policy, created_at_ms, revoked_at_ms) = row?;
            match serde_json::from_str::<Policy>(&policy) {
                Ok(policy) => keys.push(KeyRecord {
                    name,
                    token_sha256,
                    policy,
                    created_at_ms,
                    revoked_at_ms,
                }),
                Err(_) => bad.push(name),
            }
        }
        Ok((keys, bad))
    }

    /// The key named `name`, revoked or not.
    pub fn key(&self, name: &str) -> Result<Option<KeyRecord>, StoreError> {
        let (keys, _) = self.keys()?;
        Ok(keys.into_iter().find(|k| k.name == name))
    }

    /// Revokes a live key; returns whether there was one.
    pub fn revoke_key(&self, name: &str, at_ms: i64) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, at_ms],
        )?;
        Ok(n == 1)
    }

    /// What requests made with key `name` have cost since the UTC day of
    /// `since_ms` (budgets' periods start at a day's start).
    pub fn key_spend(&self, name: &str, since_ms: i64) -> Result<f64, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT total(cost_usd) FROM key_days WHERE name = ?1 AND day >= ?2",
                params![name, since_ms.div_euclid(86_400_000)],
                |r| r.get::<_, f64>(0),
            )
            .optional()?
            .unwrap_or(0.0))
    }

    /// The store's own id, drawn when it was made (or first opened by an
    /// llmroute that keeps one).
    pub fn store_id(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE name = 'store_id'", [], |r| {
                r.get(0)
            })?)
    }

    /// A number that changes whenever any connection changes the store
    /// (`PRAGMA data_version` as seen by this one), so that a reader polls
    /// cheaply for changes to the keys.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, created: i64) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            token_sha256: "ab".repeat(32),
            policy: Policy {
                rpm: Some(5),
                ..Policy::default()
            },
            created_at_ms: created,
            revoked_at_ms: None,
        }
    }

    #[test]
    fn a_live_name_is_kept_until_revoked() {
        let s = Store::in_memory().unwrap();
        assert!(s.put_key(&key("a", 1)).unwrap());
        assert!(!s.put_key(&key("a", 2)).unwrap(), "a live key stays");
        assert_eq!(s.key("a").unwrap().unwrap().created_at_ms, 1);
        assert!(s.revoke_key("a", 3).unwrap());
        assert!(!s.revoke_key("a", 4).unwrap(), "revoked once");
        assert_eq!(s.key("a").unwrap().unwrap().revoked_at_ms, Some(3));
        assert!(s.put_key(&key("a", 5)).unwrap(), "made again");
        let (keys, bad) = s.keys().unwrap();
        assert_eq!(keys, vec![key("a", 5)]);
        assert!(bad.is_empty());
    }

    #[test]
    fn a_key_s_spend_outlasts_the_pruned_requests() {
        use crate::engine::ports::{Record, RequestRow};
        let s = Store::in_memory().unwrap();
        let day = 86_400_000;
        for (ts, cost) in [(day, 0.25), (day + 5, 0.5), (3 * day, 1.0)] {
            let row = RequestRow {
                ts,
                line: 1,
                request_id: None,
                model: Some("m".into()),
                ok: true,
                cached: false,
                latency_ms: 1.0,
                cost_usd: Some(cost),
                prompt_tokens: None,
                completion_tokens: None,
                score: None,
                attempts: 1,
                error_type: None,
                key: Some("a".into()),
                rid: None,
                task: None,
                charged_usd: None,
            };
            s.write_line(&Record {
                request: Some(row),
                ..Record::default()
            })
            .unwrap();
        }
        s.conn().execute("DELETE FROM requests", []).unwrap();
        assert_eq!(s.key_spend("a", 0).unwrap(), 1.75);
        assert_eq!(
            s.key_spend("a", 2 * day + 7).unwrap(),
            1.0,
            "from that day on"
        );
        assert_eq!(s.key_spend("b", 0).unwrap(), 0.0);
    }
}
