//! `llmroute keys`: client keys for `serve`. A key's token is printed once
//! when it is made; the store (and Redis, with `--redis`) keeps only its
//! SHA-256, with the key's policy. A running server reads the keys every
//! few seconds, so a key made or revoked here takes effect without a
//! restart.

use anyhow::{anyhow, bail};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::cli::{KeyCreateArgs, KeysAction, KeysArgs};
use crate::core::keys::{check_name, merge, CacheUse, FeedbackUse, KeyRecord, Period, Policy};
use crate::core::numbers::{counted, usd};
use crate::core::ranking::Presets;
use crate::options::Options;
use crate::setup as app;
use crate::shared::Link;
use crate::store::{self, Store};

/// Runs `llmroute keys ...`.
pub fn main(args: &KeysArgs, options: &Options) -> anyhow::Result<i32> {
    let path = options.store_path()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let link = match &options.redis {
        None => None,
        Some(r) => Some(
            rt.block_on(Link::open(&r.url, &r.prefix, r.timeout))
                .map_err(|e| {
                    anyhow!(
                        "cannot reach Redis at {}: {e}",
                        crate::shared::shown(&r.url)
                    )
                })?,
        ),
    };
    let now = store::now_ms();
    match &args.action {
        KeysAction::Create(c) => {
            // A key's name and patterns are shown, logged and kept: an
            // upstream's key given for one is refused, and not repeated.
            let secrets = crate::wiring::secrets(options);
            let given = std::iter::once(("the name", &c.name))
                .chain(c.models.iter().map(|m| ("--models", m)))
                .chain(c.priorities.iter().map(|p| ("--priorities", p)));
            for (what, text) in given {
                if secrets.holds_key(text) {
                    bail!("{what} holds an upstream's API key; no key was made");
                }
            }
            // Keys are made before a server first runs: the first one
            // makes the store, as the server would.
            let store = Store::open(&path)?;
            create(
                c,
                &store,
                link.as_deref(),
                &rt,
                (now, &options.routing.presets),
            )
        }
        KeysAction::Revoke { name } => {
            let store = crate::setup::open_existing(&path)?;
            revoke(name, &store, link.as_deref(), &rt, now)
        }
        KeysAction::List { json } => {
            let store = crate::setup::open_to_read(&path)?;
            let keys = all(&store, link.as_deref(), &rt, &path)?;
            list(&keys, *json, now)
        }
        KeysAction::Show { name, json } => {
            let store = crate::setup::open_to_read(&path)?;
            let keys = all(&store, link.as_deref(), &rt, &path)?;
            let Some(k) = keys.into_iter().find(|k| k.name == *name) else {
                bail!("no key named {name}; `llmroute keys list` shows them");
            };
            let (start, _, period) = k.policy.period.at(now);
            let here = store
                .key_spend(&k.name, start)
                .map_err(app::store_fatal(&path))?;
            // With Redis, the budget every server shares holds what all
            // of them spent; this store, what this machine did.
            let shared = link.as_deref().and_then(|l| {
                let id = format!("key:{}:{period}", k.name);
                let hash = crate::shared::keys::budget(&l.prefix, &id);
                rt.block_on(crate::shared::limits::spent(l, &hash))
            });
            let spent = match shared {
                Some(all) => Spent::AllServers(all.max(here)),
                None => Spent::Here(here),
            };
            show(&k, spent, &period, *json, now)
        }
    }
}

/// The keys of the store and of Redis, merged.
fn all(
    store: &Store,
    link: Option<&Link>,
    rt: &tokio::runtime::Runtime,
    path: &std::path::Path,
) -> anyhow::Result<Vec<KeyRecord>> {
    let (mut keys, bad) = store.keys().map_err(app::store_fatal(path))?;
    for b in bad {
        eprintln!("llmroute: warning: key {b} has a policy this llmroute cannot read; skipped");
    }
    if let Some(l) = link {
        match rt.block_on(crate::shared::clients::all(l)) {
            Some(shared) => keys.extend(shared),
            // What the store holds is still worth showing, said as such.
            None => eprintln!(
                "llmroute: warning: Redis {}: these are the keys this store holds, \
                 without those made on other machines",
                l.unreached()
            ),
        }
    }
    Ok(merge(keys))
}

/// The policy `create`'s flags describe.
/// `presets` are the config's: a key may be allowed them as it may the
/// built-in priorities.
fn policy_of(c: &KeyCreateArgs, now: i64, presets: &Presets) -> anyhow::Result<Policy> {
    let policy = Policy {
        budget_usd: c.budget,
        period: match &c.per {
            Some(p) => Period::parse(p).map_err(anyhow::Error::msg)?,
            None => Period::Total,
        },
        rpm: c.rpm,
        tpm: c.tpm,
        models: c.models.iter().map(|m| m.trim().to_string()).collect(),
        priorities: c.priorities.iter().map(|p| p.trim().to_string()).collect(),
        max_tokens: c.max_tokens,
        cache: match c.cache.as_deref() {
            Some("shared") => CacheUse::Shared,
            _ => CacheUse::Own,
        },
        expires_at_ms: c.expires.as_deref().map(|w| expiry(w, now)).transpose()?,
        feedback: match c.feedback.as_deref() {
            Some("off") => FeedbackUse::Off,
            _ => FeedbackUse::On,
        },
    };
    for p in &policy.priorities {
        if crate::core::scoring::Priority::from_name(p).is_none() && !presets.contains_key(p) {
            let mut own: Vec<&str> = presets.keys().map(String::as_str).collect();
            own.sort_unstable();
            let own = match own.is_empty() {
                true => "none in the config".to_string(),
                false => own.join(", "),
            };
            bail!(
                "--priorities {p}: not a priority (speed, cost, quality, balanced) or a preset of the config ({own})"
            );
        }
    }
    policy.check().map_err(anyhow::Error::msg)?;
    Ok(policy)
}

/// The last instant a date can show: the end of 9999-12-31, UTC.
const LAST_MS: i64 = 253_402_300_799_999;

/// `--expires`: a duration from now, or a UTC date or time, no later than
/// a date can show.
fn expiry(when: &str, now: i64) -> anyhow::Result<i64> {
    let w = when.trim();
    let ms = match crate::core::duration::parse(w) {
        Ok(d) if d.is_zero() => {
            bail!("--expires {w}: a key that expires at once is of no use; give a duration above 0")
        }
        Ok(d) => now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        Err(_) => date_ms(w)?,
    };
    if ms <= now {
        bail!("--expires {w}: that is already past");
    }
    if ms > LAST_MS {
        bail!(
            "--expires {w}: past the year 9999; leave --expires out for a key that does not expire"
        );
    }
    Ok(ms)
}

/// A UTC date or time (`2027-01-31`, `2027-01-31T12:00:00Z`) as unix ms.
fn date_ms(w: &str) -> anyhow::Result<i64> {
    let full = match w.len() {
        10 => format!("{w}T00:00:00Z"),
        _ => w.to_string(),
    };
    let at = humantime::parse_rfc3339_weak(&full).map_err(|_| {
        anyhow!("--expires {w}: give a duration (30d) or a UTC date or time (2027-01-31, 2027-01-31T12:00:00Z)")
    })?;
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow!("--expires {w}: before 1970"))?
        .as_millis();
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// A new token: 24 random bytes, in hex, after a prefix that says what it is.
fn new_token() -> anyhow::Result<String> {
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(|e| anyhow!("cannot draw a random token: {e}"))?;
    Ok(format!("llmr-{}", hex::encode(raw)))
}

fn create(
    c: &KeyCreateArgs,
    store: &Store,
    link: Option<&Link>,
    rt: &tokio::runtime::Runtime,
    (now, presets): (i64, &Presets),
) -> anyhow::Result<i32> {
    check_name(&c.name).map_err(anyhow::Error::msg)?;
    let policy = policy_of(c, now, presets)?;
    if let Some(l) = link {
        let live = rt
            .block_on(crate::shared::clients::all(l))
            .ok_or_else(|| anyhow!("cannot read the keys in Redis"))?;
        if live
            .iter()
            .any(|k| k.name == c.name && k.revoked_at_ms.is_none())
        {
            bail!(
                "a key named {} exists; revoke it first, or choose another name",
                c.name
            );
        }
    }
    let token = new_token()?;
    let record = KeyRecord {
        name: c.name.clone(),
        token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
        policy,
        created_at_ms: now,
        revoked_at_ms: None,
    };
    if !store
        .put_key(&record)
        .map_err(app::store_fatal(store.path()))?
    {
        bail!(
            "a key named {} exists; revoke it first, or choose another name",
            c.name
        );
    }
    if let Some(l) = link {
        rt.block_on(crate::shared::clients::put(l, &record))
            .ok_or_else(|| {
                anyhow!("the key is in the store, but Redis could not be reached to share it")
            })?;
    }
    let text = if c.json {
        let mut v = json!({"token": token});
        v.as_object_mut().expect("an object").extend(
            describe(&record, now)
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        format!("{v}\n")
    } else {
        // The token alone on stdout, so that `$(llmroute keys create NAME)`
        // is the token; what was made, for people, on stderr.
        eprintln!(
            "llmroute: key {} made{}. The token is shown once: only its SHA-256 is kept.",
            c.name,
            limits_text(&record.policy).map_or(String::new(), |l| format!(" ({l})")),
        );
        format!("{token}\n")
    };
    app::write_stdout(text.as_bytes())
}

fn revoke(
    name: &str,
    store: &Store,
    link: Option<&Link>,
    rt: &tokio::runtime::Runtime,
    now: i64,
) -> anyhow::Result<i32> {
    let mut found = store
        .revoke_key(name, now)
        .map_err(app::store_fatal(store.path()))?;
    // Revoked in the store, not yet in Redis: said as it is.
    let half_done = |found: bool, what: &str| match found {
        true => anyhow!(
            "key {name} is revoked in this store, but {what}: servers on other stores take \
             its token until this is run again with Redis answering"
        ),
        false => anyhow!("{what}"),
    };
    // When it was revoked, if it already was (here or, with Redis, there).
    let mut already = None;
    if let Some(l) = link {
        let shared = rt
            .block_on(crate::shared::clients::all(l))
            .ok_or_else(|| half_done(found, "cannot read the keys in Redis"))?;
        let live = shared
            .into_iter()
            .chain(store.key(name).ok().flatten())
            .filter(|k| k.name == name);
        if let Some(mut k) = merge(live).into_iter().next() {
            already = k.revoked_at_ms;
            if k.revoked_at_ms.is_none() || found {
                found = true;
                k.revoked_at_ms = Some(now);
                rt.block_on(crate::shared::clients::put(l, &k))
                    .ok_or_else(|| {
                        half_done(true, &format!("Redis {} to revoke it there", l.unreached()))
                    })?;
                let _ = store.mirror_key(&k);
            }
        }
    }
    if !found {
        let here = || -> anyhow::Result<Option<i64>> {
            let k = store.key(name).map_err(app::store_fatal(store.path()))?;
            Ok(k.and_then(|k| k.revoked_at_ms))
        };
        let Some(at) = already.map_or_else(here, |at| Ok(Some(at)))? else {
            bail!("no key named {name}; `llmroute keys list` shows them");
        };
        // Revoking twice (a script run again) leaves it as it was.
        return app::write_stdout(
            format!("key {name} was already revoked, at {}\n", time(at)).as_bytes(),
        );
    }
    let reach = match link {
        Some(_) => "servers on this store or this Redis",
        None => "servers on this store (give --redis to reach the others on a Redis)",
    };
    app::write_stdout(
        format!("key {name} revoked; {reach} refuse its token within seconds\n").as_bytes(),
    )
}

/// A key's state at `now`.
fn state(k: &KeyRecord, now: i64) -> &'static str {
    match (k.revoked_at_ms, k.policy.expires_at_ms) {
        (Some(_), _) => "revoked",
        (None, Some(e)) if now >= e => "expired",
        _ => "live",
    }
}

/// A key's limits in a few words; None when it has none.
fn limits_text(p: &Policy) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(b) = p.budget_usd {
        parts.push(match p.period {
            Period::Total => format!("budget {}", usd(b)),
            other => format!("budget {} a {}", usd(b), other.name()),
        });
    }
    if let Some(n) = p.rpm {
        parts.push(format!("{}/min", counted(n.into(), "request")));
    }
    if let Some(n) = p.tpm {
        parts.push(format!("{}/min", counted(n.into(), "token")));
    }
    if !p.models.is_empty() {
        parts.push(format!("models {}", p.models.join(",")));
    }
    if !p.priorities.is_empty() {
        parts.push(format!("priorities {}", p.priorities.join(",")));
    }
    if let Some(n) = p.max_tokens {
        parts.push(format!("max_tokens {n}"));
    }
    if p.cache == CacheUse::Shared {
        parts.push("shared cache".into());
    }
    if p.feedback == FeedbackUse::Off {
        parts.push("no feedback".into());
    }
    if let Some(at) = p.expires_at_ms {
        parts.push(format!("expires {}", time(at)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A key as JSON, without its token's digest.
fn describe(k: &KeyRecord, now: i64) -> serde_json::Value {
    json!({
        "name": k.name,
        "state": state(k, now),
        "created_at_ms": k.created_at_ms,
        "revoked_at_ms": k.revoked_at_ms,
        "policy": k.policy,
    })
}

fn list(keys: &[KeyRecord], as_json: bool, now: i64) -> anyhow::Result<i32> {
    let text = if as_json {
        let all: Vec<_> = keys.iter().map(|k| describe(k, now)).collect();
        format!("{}\n", serde_json::Value::Array(all))
    } else if keys.is_empty() {
        "no keys; make one with `llmroute keys create NAME`\n".to_string()
    } else {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::NOTHING);
        t.set_header(["name", "state", "created", "limits"]);
        for k in keys {
            t.add_row([
                k.name.clone(),
                state(k, now).to_string(),
                day(k.created_at_ms),
                limits_text(&k.policy).unwrap_or_else(|| "none".into()),
            ]);
        }
        format!("{t}\n")
            .lines()
            .map(|l| l.trim_end().to_string() + "\n")
            .collect()
    };
    app::write_stdout(text.as_bytes())
}

/// What a key spent in its period: as Redis's shared budget holds it
/// for every server, or as this machine's store recorded it.
enum Spent {
    AllServers(f64),
    Here(f64),
}

fn show(k: &KeyRecord, spent: Spent, period: &str, as_json: bool, now: i64) -> anyhow::Result<i32> {
    let p = &k.policy;
    let (spent, whose) = match spent {
        Spent::AllServers(x) => (x, "all servers', as Redis holds it"),
        Spent::Here(x) => (x, "as this machine's store recorded it"),
    };
    let text = if as_json {
        let mut v = describe(k, now);
        v["spent_usd"] = json!(crate::core::numbers::round_usd(spent));
        v["period"] = json!(period);
        v["left_usd"] = json!(p
            .budget_usd
            .map(|b| crate::core::numbers::round_usd((b - spent).max(0.0))));
        format!("{v}\n")
    } else {
        let mut lines = vec![
            format!("key      {}", k.name),
            format!("state    {}", state(k, now)),
            format!("created  {}", day(k.created_at_ms)),
            format!(
                "limits   {}",
                limits_text(p).unwrap_or_else(|| "none".into())
            ),
            format!("spent    {} ({period}, {whose})", usd(spent)),
        ];
        if let Some(b) = p.budget_usd {
            lines.push(format!("left     {}", usd((b - spent).max(0.0))));
        }
        // Its expiry is among its limits, above.
        format!("{}\n", lines.join("\n"))
    };
    app::write_stdout(text.as_bytes())
}

/// Unix ms as a UTC date.
fn day(ms: i64) -> String {
    let (y, m, d) = crate::core::keys::civil(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Unix ms as a UTC time.
fn time(ms: i64) -> String {
    if ms > LAST_MS {
        return "after 9999-12-31".into();
    }
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_may_be_allowed_the_config_s_presets() {
        let args = |list: &str| {
            let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
                "llmroute",
                "keys",
                "create",
                "k",
                "--priorities",
                list,
            ])
            .unwrap();
            match cli.command {
                Some(crate::cli::Command::Keys(k)) => match k.action {
                    KeysAction::Create(c) => c,
                    _ => unreachable!(),
                },
                _ => unreachable!(),
            }
        };
        let mut presets = Presets::new();
        let w = crate::core::ranking::resolve_priority("cost", &presets).unwrap();
        presets.insert("nightly".to_string(), w);
        let p = policy_of(&args("cost,nightly"), 0, &presets).unwrap();
        assert_eq!(p.priorities, ["cost", "nightly"]);
        let e = policy_of(&args("weekly"), 0, &presets).unwrap_err();
        assert!(
            e.to_string().contains("a preset of the config (nightly)"),
            "{e}"
        );
        let e = policy_of(&args("nightly"), 0, &Presets::new()).unwrap_err();
        assert!(e.to_string().contains("none in the config"), "{e}");
    }

    #[test]
    fn an_expiry_is_one_a_date_can_show() {
        let now = 1_800_000_000_000;
        assert!(expiry("30d", now).is_ok());
        let far = expiry("8000y", now).unwrap_err().to_string();
        assert!(far.contains("9999"), "{far}");
        assert!(expiry("99999999d", now).is_err());
        assert!(expiry("9999-12-31", now).is_ok());
        // What a store may already hold is shown, not a panic.
        assert_eq!(time(i64::MAX), "after 9999-12-31");
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn a_key_s_limits_say_when_it_expires() {
        let p = Policy {
            expires_at_ms: Some(0),
            ..Policy::default()
        };
        assert_eq!(
            limits_text(&p).as_deref(),
            Some("expires 1970-01-01T00:00:00Z")
        );
        assert_eq!(limits_text(&Policy::default()), None);
    }
}
