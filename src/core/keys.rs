//! Client keys: a name, the SHA-256 of its token, and the policy a server
//! holds its requests to (a budget per period, requests and tokens a
//! minute, the models it may name, priorities, a `max_tokens` cap, its
//! cache). Plain data and arithmetic on it; the store, Redis and the
//! server keep and enforce it.

use serde::{Deserialize, Serialize};

/// Most characters in a key's name.
pub const NAME_MAX: usize = 64;
/// Most model patterns or priorities a key may list.
pub const LIST_MAX: usize = 64;

/// How long a key's budget lasts before it starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    Month,
    /// The key's whole life.
    #[default]
    Total,
}

impl Period {
    pub fn parse(s: &str) -> Result<Period, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" | "daily" => Ok(Period::Day),
            "month" | "monthly" => Ok(Period::Month),
            "total" => Ok(Period::Total),
            other => Err(format!("{other}: a budget is per day, month or total")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    /// The period holding `now_ms` (unix ms): its start and end (unix ms;
    /// `i64::MAX` for a total budget), and a name for it (`2026-12-06`,
    /// `2026-12`, `total`).
    pub fn at(self, now_ms: i64) -> (i64, i64, String) {
        const DAY: i64 = 86_400_000;
        let day = now_ms.div_euclid(DAY);
        match self {
            Period::Day => {
                let (y, m, d) = civil(day);
                (day * DAY, (day + 1) * DAY, format!("{y:04}-{m:02}-{d:02}"))
            }
            Period::Month => {
                let (y, m, _) = civil(day);
                let start = days_from_civil(y, m, 1) * DAY;
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let end = days_from_civil(ny, nm, 1) * DAY;
                (start, end, format!("{y:04}-{m:02}"))
            }
            Period::Total => (i64::MIN, i64::MAX, "total".to_string()),
        }
    }
}

/// The civil date (year, month 1-12, day 1-31) of a day since 1970-01-01.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whose cache a key's requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheUse {
    /// Its own: no other key is answered from it or learns what is in it.
    #[default]
    Own,
    /// The cache every key that shares uses.
    Shared,
}

/// Whether a key's feedback teaches the router, which routes every key's
/// requests by what it learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackUse {
    #[default]
    On,
    /// Its feedback is refused: it cannot steer the others' routing.
    Off,
}

impl FeedbackUse {
    fn is_on(&self) -> bool {
        *self == FeedbackUse::On
    }
}

/// What a key may do. Every limit is optional: a key with none is a
/// token and a name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// USD a period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    pub period: Period,
    /// Requests a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens (prompt and completion, as the upstream counted them) a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
    /// Patterns of the models its requests may name or be routed to
    /// (`*` matches any run of characters); none: the server's own rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// The priorities it may ask for; none: any. The first is its default
    /// when the server's is not among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priorities: Vec<String>,
    /// The most `max_tokens` a request may ask for; a request that sets
    /// none is given this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub cache: CacheUse,
    /// Unix ms after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Whether its feedback is taken (left out when it is: a record made
    /// before it reads the same).
    #[serde(default, skip_serializing_if = "FeedbackUse::is_on")]
    pub feedback: FeedbackUse,
}

impl Policy {
    /// Whether `model` matches one of the key's patterns (true when it has
    /// none: the server's own rule then applies).
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| matches(p, model))
    }

    /// Whether it limits the models at all.
    pub fn limits_models(&self) -> bool {
        !self.models.is_empty()
    }

    /// Checks the policy's own values.
    pub fn check(&self) -> Result<(), String> {
        if let Some(b) = self.budget_usd {
            if !b.is_finite() || b < 0.0 {
                return Err(format!("a budget of {b} USD: give a number of 0 or more"));
            }
            // Past it, a budget is no limit, and its digits fill a line.
            if b > BUDGET_MAX {
                return Err(format!(
                    "a budget of {b:e} USD: at most {BUDGET_MAX:e}; leave it out for none"
                ));
            }
        }
        if self.rpm == Some(0) || self.tpm == Some(0) {
            return Err(
                "a rate of 0 a minute would refuse everything; leave it out for none".into(),
            );
        }
        if self.max_tokens == Some(0) {
            return Err("--max-tokens 0 would refuse everything".into());
        }
        if self.models.len() > LIST_MAX || self.priorities.len() > LIST_MAX {
            return Err(format!("at most {LIST_MAX} model patterns and priorities"));
        }
        if let Some(p) = self
            .models
            .iter()
            .find(|p| p.trim().is_empty() || p.len() > 256 || p.chars().any(char::is_control))
        {
            return Err(format!("{p:?}: not a model pattern"));
        }
        Ok(())
    }
}

/// Whether `pattern` (`*` for any run of characters, the rest literal)
/// matches all of `text`. Linear in their lengths: greedy with one
/// backtrack point, as glob matchers are.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

/// Checks a key's name: 1 to [`NAME_MAX`] letters, digits, `-`, `_`, `.`
/// or `@`, so that it is safe in a metric label, a log line and a Redis key.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if !ok {
        return Err(format!(
            "{name:?}: a key's name is 1 to {NAME_MAX} ASCII letters, digits, '-', '_', '.' or '@'"
        ));
    }
    // The names a server gives its trusted and admin tokens: a key of the
    // same name would share their records, spend and feedback.
    // In any case: reports and metrics would show them beside the real ones.
    let lower = name.to_ascii_lowercase();
    let reserved = ["token-", "admin-"].iter().any(|p| {
        lower
            .strip_prefix(p)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if reserved {
        return Err(format!(
            "{name:?}: token-N and admin-N are the names of the server's trusted and admin tokens; choose another"
        ));
    }
    // The label `/metrics` gives the keys past its first thousand.
    if lower == "other" {
        return Err(format!(
            "{name:?}: `other` is the name /metrics gives the keys past its first 1,000; choose another"
        ));
    }
    Ok(())
}

/// The largest budget a key may have, in USD.
pub const BUDGET_MAX: f64 = 1e9;

/// A key as it is kept: never its token, only the token's SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    /// The SHA-256 of its token, in hex.
    pub token_sha256: String,
    pub policy: Policy,
    pub created_at_ms: i64,
    /// When it was revoked; a revoked key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
}

impl KeyRecord {
    /// Whether it lets requests in at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.policy.expires_at_ms.is_none_or(|e| now_ms < e)
    }

    /// The token's digest, when its hex is sane.
    pub fn digest(&self) -> Option<[u8; 32]> {
        let raw = hex::decode(&self.token_sha256).ok()?;
        raw.try_into().ok()
    }
}

/// The latest record of each name: records from several places (the
/// store, Redis) merged, a revocation winning over what it revoked.
pub fn merge(records: impl IntoIterator<Item = KeyRecord>) -> Vec<KeyRecord> {
    let mut by_name: std::collections::BTreeMap<String, KeyRecord> = Default::default();
    for r in records {
        let newer = match by_name.get(&r.name) {
            None => true,
            Some(old) => {
                let stamp = |k: &KeyRecord| (k.created_at_ms, k.revoked_at_ms.is_some());
                stamp(&r) > stamp(old)
            }
        };
        if newer {
            by_name.insert(r.name.clone(), r);
        }
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names_with_stars() {
        assert!(matches("openai/*", "openai/gpt-5.4"));
        assert!(!matches("openai/*", "anthropic/claude"));
        assert!(matches("*:free", "meta/llama:free"));
        assert!(!matches("*:free", "meta/llama:free2"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("*", ""));
        assert!(matches("exact/model", "exact/model"));
        assert!(!matches("exact/model", "exact/model2"));
        // Linear, not exponential, on a hostile pattern.
        let long = "a".repeat(10_000);
        assert!(!matches(&format!("{}b", "*a".repeat(100)), &long));
    }

    #[test]
    fn days_and_months_are_utc_calendar_periods() {
        // 2026-12-06T08:30:00Z
        let now = 1_796_545_800_000;
        let (s, e, name) = Period::Day.at(now);
        assert_eq!(name, "2026-12-06");
        assert_eq!(e - s, 86_400_000);
        assert!(s <= now && now < e);
        let (s, e, name) = Period::Month.at(now);
        assert_eq!(name, "2026-12");
        assert_eq!(civil(s / 86_400_000), (2026, 12, 1));
        assert_eq!(civil(e / 86_400_000), (2027, 1, 1));
        let (_, _, feb) = Period::Month.at(days_from_civil(2028, 2, 29) * 86_400_000);
        assert_eq!(feb, "2028-02");
        assert_eq!(Period::Total.at(now).2, "total");
        for d in [-1000, 0, 59, 365, 19_000, 20_793] {
            let (y, m, dd) = civil(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn names_are_safe_for_labels_and_keys() {
        assert!(check_name("team-a_1.x@corp").is_ok());
        for bad in ["", "a b", "a:b", "é", &"x".repeat(65), "a\"b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        // The trusted and admin tokens' names are theirs.
        for taken in ["token-1", "admin-12"] {
            assert!(
                check_name(taken).unwrap_err().contains("trusted"),
                "{taken}"
            );
        }
        assert!(check_name("token-ci").is_ok() && check_name("admin-").is_ok());
        for taken in ["TOKEN-1", "Admin-2", "other", "Other"] {
            assert!(check_name(taken).is_err(), "{taken}");
        }
        assert!(check_name("others").is_ok());
    }

    #[test]
    fn a_policy_round_trips_and_checks_its_values() {
        let p = Policy {
            budget_usd: Some(5.0),
            period: Period::Month,
            rpm: Some(60),
            models: vec!["openai/*".into()],
            ..Policy::default()
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
        assert!(p.check().is_ok());
        assert!(p.allows_model("openai/x") && !p.allows_model("x/y"));
        assert!(Policy::default().allows_model("anything"));
        let bad = Policy {
            rpm: Some(0),
            ..Policy::default()
        };
        assert!(bad.check().is_err());
        // A control character in a pattern would garble `keys list`'s
        // table, or a terminal.
        for p in ["openai/*\nx", "a\u{1b}[31m", "a\tb"] {
            let bad = Policy {
                models: vec![p.into()],
                ..Policy::default()
            };
            assert!(
                bad.check().unwrap_err().contains("not a model pattern"),
                "{p:?}"
            );
        }
        let budget = |b| Policy {
            budget_usd: Some(b),
            ..Policy::default()
        };
        assert!(budget(BUDGET_MAX).check().is_ok());
        assert!(budget(1e300).check().unwrap_err().contains("at most 1e9"));
        assert!(serde_json::from_str::<Policy>(r#"{"budjet_usd":1}"#).is_err());
    }

    #[test]
    fn merged_records_keep_the_latest_and_revocations() {
        let key = |created, revoked| KeyRecord {
            name: "a".into(),
            token_sha256: "00".into(),
            policy: Policy::default(),
            created_at_ms: created,
            revoked_at_ms: revoked,
        };
        let m = merge([key(1, None), key(1, Some(5))]);
        assert_eq!(m.len(), 1);
        assert!(m[0].revoked_at_ms.is_some());
        let m = merge([key(1, Some(5)), key(9, None)]);
        assert_eq!(m[0].created_at_ms, 9, "made again after a revocation");
        assert!(m[0].active(10));
        let expiring = KeyRecord {
            policy: Policy {
                expires_at_ms: Some(10),
                ..Policy::default()
            },
            ..key(1, None)
        };
        assert!(expiring.active(9) && !expiring.active(10));
    }
}
