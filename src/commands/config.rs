//! `llmroute config path` and `llmroute config show`.

use anyhow::Context;

use crate::cli::ConfigAction;
use crate::config::Loaded;
use crate::options::Options;
use crate::setup::{write_stdout, API_KEY_VAR};

/// `llmroute config path` and `llmroute config show`.
pub fn main(action: &ConfigAction, options: &Options, loaded: &Loaded) -> anyhow::Result<i32> {
    let text = match action {
        ConfigAction::Path => {
            let config = match (&loaded.path, &loaded.location) {
                (Some(p), _) => p.display().to_string(),
                (None, Some(p)) => format!("{} (not present)", p.display()),
                (None, None) => "(no home directory)".into(),
            };
            let store = options.store_path()?;
            format!(
                "config     {config}\nstore      {}\ncatalogue  {} (table catalogue, one copy per base URL)\n",
                store.display(),
                store.display()
            )
        }
        ConfigAction::Show(_) => {
            let key = if std::env::var(API_KEY_VAR).is_ok_and(|k| !k.trim().is_empty()) {
                "set"
            } else {
                "not set"
            };
            let body =
                toml::to_string(&options.to_config()?).context("cannot show the configuration")?;
            let source = match &loaded.path {
                Some(p) => format!("flags, environment, {}, built-in defaults", p.display()),
                None => "flags, environment, built-in defaults (no config file)".into(),
            };
            format!("# Effective configuration, from {source}\n# {API_KEY_VAR} is {key}\n{body}")
        }
    };
    write_stdout(text.as_bytes())
}
