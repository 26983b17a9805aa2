//! The policy a request is held to before the engine sees it: the models
//! it may name or be routed to, the priorities it may ask for, and its
//! `max_tokens`, by its key's policy and the server's own rules.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::errors::ApiError;
use super::state::App;
use crate::core::keys::Policy;
use crate::core::request::Request;

fn not_allowed(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "permission_error", code, message)
}

/// A key's `max_tokens` cap on a body: a body that asks for more is
/// refused; one that asks for none is given the cap, so the upstream
/// holds to it too.
pub fn cap_max_tokens(
    obj: &mut Map<String, Value>,
    cap: Option<u64>,
    name: &str,
) -> Result<(), ApiError> {
    let Some(cap) = cap else { return Ok(()) };
    let mut asked = false;
    for field in ["max_tokens", "max_completion_tokens"] {
        match obj.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => {
                asked = true;
                // A number that is not whole is the body's own error, told
                // as such when the body is read.
                if v.as_f64()
                    .is_some_and(|n| n.fract() == 0.0 && n > cap as f64)
                {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "max_tokens_too_large",
                        format!("{field} is over key {name}'s cap of {cap}"),
                    ));
                }
            }
        }
    }
    if !asked {
        obj.insert("max_tokens".into(), Value::from(cap));
    }
    Ok(())
}

/// Refuses a keyed request that hands the choice of model to the upstream:
/// OpenRouter's `models` (with `route: "fallback"`, its default) lets the
/// API answer with another model than the one sent, past the key's
/// models, its budget's estimate and what is recorded of the answer.
/// llmroute's own fallback (`llmroute.fallback`) does the same within them.
/// OpenRouter's `preset` names settings kept on its side, which may set
/// the model: refused alike.
pub fn no_upstream_choice(obj: &Map<String, Value>, name: &str) -> Result<(), ApiError> {
    let refused = |why: String| {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "parameter_not_allowed",
            why,
        ))
    };
    match obj.get("models") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) if list.is_empty() => {}
        Some(_) => {
            return refused(format!(
                "key {name} may not send `models`: it lets the upstream answer with another \
                 model, outside the key's models and budget; list fallback models in \
                 llmroute.fallback, which llmroute tries itself"
            ))
        }
    }
    match obj.get("preset") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => refused(format!(
            "key {name} may not send `preset`: an upstream's preset may set the model, \
             outside the key's models and budget"
        )),
    }
}

impl App {
    /// Holds `req` to the policy of key `name` and to the server's rules.
    /// Give it the request's task first: the task is checked too.
    pub fn hold_to_policy(
        &self,
        req: &mut Request,
        key: Option<(&str, &Policy)>,
    ) -> Result<(), ApiError> {
        self.router
            .no_secret_in(req)
            .map_err(ApiError::bad_request)?;
        self.no_misspelt_upstream(req)?;
        match key {
            Some((name, p)) if p.limits_models() => self.check_patterns(req, name, p)?,
            _ => self.check_models(req)?,
        }
        if let Some((name, p)) = key.filter(|(_, p)| !p.priorities.is_empty()) {
            self.check_priority(req, name, p)?;
        }
        Ok(())
    }

    /// Refuses a request naming a misspelt upstream (`lcoal:llama3`), which
    /// would send its prompt to the default API, with its key: whatever
    /// models a key or `--allow-any-model` lets it name.
    fn no_misspelt_upstream(&self, req: &Request) -> Result<(), ApiError> {
        let catalogue = self.router.catalogue();
        match req
            .named_models()
            .find_map(|m| crate::upstreams::misspelt_in(m, &self.upstreams, catalogue))
        {
            None => Ok(()),
            Some(why) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "model_not_allowed",
                crate::core::failure::snippet(why.as_bytes()).to_string(),
            )),
        }
    }

    /// Refuses a request that pins or lists a model which is neither in
    /// the catalogue nor among the configured candidates and fallback
    /// (unless `--allow-any-model`): a client cannot send the server to
    /// models nobody chose, nor grow its health maps and metrics' labels
    /// with names of its own.
    pub fn check_models(&self, req: &Request) -> Result<(), ApiError> {
        if self.allow_any_model {
            return Ok(());
        }
        let config = &self.router.config().settings;
        let known = |m: &str| {
            self.router.catalogue().get(m).is_some()
                || config
                    .models
                    .iter()
                    .chain(config.fallback.iter())
                    .any(|c| c == m)
        };
        for m in req.named_models() {
            if !known(m) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "model_not_allowed",
                    format!(
                        "{} is neither in the catalogue nor among the configured candidates; \
                         the server's --allow-any-model lets a request name any model",
                        crate::core::failure::snippet(m.as_bytes())
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A key with model patterns: what the request names must match them,
    /// and a routed request is routed among the server's candidates (and
    /// fallback) that match them.
    fn check_patterns(&self, req: &mut Request, name: &str, p: &Policy) -> Result<(), ApiError> {
        let patterns = p.models.join(", ");
        if let Some(m) = req.named_models().find(|m| !p.allows_model(m)) {
            return Err(not_allowed(
                "model_not_allowed",
                format!(
                    "key {name} may not use {}; it may use {patterns}",
                    crate::core::failure::snippet(m.as_bytes())
                ),
            ));
        }
        let config = &self.router.config().settings;
        let o = req.overrides.get_or_insert_with(Default::default);
        // The server's fallback models, a pinned request's too, are only
        // those the key may use.
        if o.fallback.is_none() && !config.fallback.is_empty() {
            o.fallback = Some(
                config
                    .fallback
                    .iter()
                    .filter(|m| p.allows_model(m))
                    .cloned()
                    .collect(),
            );
        }
        if req.pinned.is_some() {
            return Ok(());
        }
        if o.models.is_none() {
            let allowed: Vec<String> = config
                .models
                .iter()
                .filter(|m| p.allows_model(m))
                .cloned()
                .collect();
            if allowed.is_empty() {
                return Err(not_allowed(
                    "model_not_allowed",
                    format!(
                        "none of the server's candidate models is open to key {name}; \
                         name a model that matches {patterns}"
                    ),
                ));
            }
            o.models = Some(allowed);
        }
        Ok(())
    }

    /// A key limited to some priorities: the request's must be one, and a
    /// request that asks for none gets the server's when it is one, else
    /// the key's first.
    fn check_priority(&self, req: &mut Request, name: &str, p: &Policy) -> Result<(), ApiError> {
        let listed = p.priorities.join(", ");
        let allowed = |x: &str| p.priorities.iter().any(|a| a.eq_ignore_ascii_case(x));
        let server = self.router.config().settings.priority.clone();
        let o = req.overrides.get_or_insert_with(Default::default);
        if o.weights.is_some() {
            return Err(not_allowed(
                "priority_not_allowed",
                format!("key {name} may not set weights; it may ask for {listed}"),
            ));
        }
        // A name that is no priority at all is left to the engine's 400,
        // as for any key.
        let known = |x: &str| {
            priority_names(&self.router)
                .iter()
                .any(|k| k.eq_ignore_ascii_case(x))
        };
        match &o.priority {
            Some(asked) if !allowed(asked) && known(asked) => Err(not_allowed(
                "priority_not_allowed",
                format!(
                    "key {name} may not ask for priority {}; it may ask for {listed}",
                    crate::core::failure::snippet(asked.as_bytes())
                ),
            )),
            Some(_) => Ok(()),
            None => {
                if !allowed(&server) {
                    o.priority = p.priorities.first().cloned();
                }
                Ok(())
            }
        }
    }
}

/// The priorities a client can name, then the presets, by name.
pub fn priority_names(router: &crate::engine::Router) -> Vec<String> {
    let mut presets: Vec<&String> = router.config().presets.keys().collect();
    presets.sort();
    crate::core::scoring::Priority::ALL
        .iter()
        .map(|p| p.name().to_string())
        .chain(presets.into_iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_tokens_is_capped_or_given() {
        let mut obj = Map::new();
        cap_max_tokens(&mut obj, Some(100), "k").unwrap();
        assert_eq!(obj["max_tokens"], 100);
        let mut obj: Map<String, Value> = serde_json::from_str(r#"{"max_tokens":50}"#).unwrap();
        cap_max_tokens(&mut obj, Some(100), "k").unwrap();
        assert_eq!(obj["max_tokens"], 50);
        let mut obj: Map<String, Value> =
            serde_json::from_str(r#"{"max_completion_tokens":500}"#).unwrap();
        let e = cap_max_tokens(&mut obj, Some(100), "k").unwrap_err();
        assert_eq!(e.code, "max_tokens_too_large");
        let mut obj = Map::new();
        cap_max_tokens(&mut obj, None, "k").unwrap();
        assert!(obj.is_empty());
    }
}
