//! `llmroute config path` and `llmroute config show`.

use anyhow::Context;

use crate::cli::ConfigAction;
use crate::config::Loaded;
use crate::options::Options;
use crate::setup::{api_key, write_stdout, API_KEY_VARS};

/// `llmroute config path` and `llmroute config show`.
pub fn main(action: &ConfigAction, options: &Options, loaded: &Loaded) -> anyhow::Result<i32> {
    let text = match action {
        ConfigAction::Path => {
            let config = match (&loaded.path, &loaded.location, &loaded.unread) {
                (None, Some(p), Some(_)) if p.exists() => {
                    format!("{} (not read: it has an error)", p.display())
                }
                (Some(p), _, _) => p.display().to_string(),
                (None, Some(p), _) => format!("{} (not present)", p.display()),
                (None, None, _) => "(no home directory)".into(),
            };
            let store = options.store_path()?;
            let unread = match loaded.unread {
                Some(_) => " (the config file's db, if it has one, is not read)",
                None => "",
            };
            format!(
                "config     {config}\nstore      {}{unread}\ncatalogue  {} (table catalogue, one copy per base URL)\n",
                store.display(),
                store.display()
            )
        }
        ConfigAction::Show(_) => {
            // What a run would refuse (an unknown priority, a candidate
            // naming no model) is refused here too.
            options.settings()?;
            crate::core::urls::check_base(&options.base_url)
                .map_err(|e| anyhow::anyhow!("{e}{}", crate::cli::environment::tip("base-url")))?;
            crate::wiring::check_redis(options)?;
            let key = match api_key() {
                Some((var, _)) => format!("{var} is set"),
                None => format!(
                    "no API key is set ({} or {})",
                    API_KEY_VARS[0], API_KEY_VARS[1]
                ),
            };
            let body =
                toml::to_string(&options.to_config()?).context("cannot show the configuration")?;
            // A key given where a setting goes (a header, a name) is not shown.
            let secrets = crate::wiring::secrets(options);
            let body = secrets.scrub_shown(&body).unwrap_or(body);
            let source = match &loaded.path {
                Some(p) => format!("flags, environment, {}, built-in defaults", p.display()),
                None => "flags, environment, built-in defaults (no config file)".into(),
            };
            format!("# Effective configuration, from {source}\n# {key}\n{body}")
        }
    };
    write_stdout(text.as_bytes())
}
