//! A chat body and its headers read into a call: the model chooses
//! routing or pins one, `stream` says how to answer, a key's `max_tokens`
//! cap applies, and the task, cache and sampling headers are read.

use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};

use super::errors::ApiError;
use crate::core::keys::Policy;
use crate::core::request::{self, model_choice, ModelChoice, Request};

/// A request as the client sent it, made routable.
pub struct Call {
    pub req: Request,
    pub stream: bool,
    pub include_usage: bool,
    /// It asks for a sample: another call may answer otherwise.
    pub sampled: bool,
}

/// Whether a chat body asks for a sample rather than the one likeliest
/// answer: a `temperature` above 0 without a `seed`, or more than one
/// choice (`n`). A body that sets no temperature is not taken as sampled.
pub fn sampled(obj: &Map<String, Value>) -> bool {
    let hot = obj
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t > 0.0);
    let seeded = obj.get("seed").is_some_and(|s| !s.is_null());
    let many = obj
        .get("n")
        .and_then(Value::as_f64)
        .is_some_and(|n| n > 1.0);
    (hot && !seeded) || many
}

/// Reads a chat body: `model` chooses routing or pins a model, `stream`
/// and `stream_options` say how to answer, the rest is the engine's.
/// `key` is the name and policy of the key the request came with: its
/// `max_tokens` cap applies to the body.
pub fn parse_call(
    bytes: &[u8],
    keyed: bool,
    key: Option<(&str, &Policy)>,
) -> Result<Call, ApiError> {
    let value: Value = crate::core::surrogates::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    // The batch filter's second input form: its checks would pass over
    // what its `body` holds.
    if request::is_batch_line(&obj) {
        return Err(ApiError::bad_request(
            "the body is an OpenAI Batch API line (custom_id, method, url, body), not a chat \
             completions body: send its \"body\" alone (the batch filter reads such lines)",
        ));
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("\"stream\" must be true or false")),
    };
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "\"stream_options.include_usage\" must be true or false",
                ))
            }
        },
        Some(_) => {
            return Err(ApiError::bad_request(
                "\"stream_options\" must be an object",
            ))
        }
    };
    if let Some(Value::String(m)) = obj.get("model") {
        match model_choice(Some(m)) {
            ModelChoice::Auto => {
                obj.remove("model");
            }
            ModelChoice::Priority(p) => {
                obj.remove("model");
                choose_priority(&mut obj, p)?;
            }
            ModelChoice::Pinned(_) => {}
        }
    }
    if let Some((name, p)) = key {
        super::policy::cap_max_tokens(&mut obj, p.max_tokens, name)?;
        super::policy::no_upstream_choice(&obj, name)?;
    }
    let sampled = sampled(&obj);
    let mut req = request::parse_object(obj).map_err(|e| ApiError::bad_request(e.message))?;
    req.prepare(keyed);
    Ok(Call {
        req,
        stream,
        include_usage,
        sampled,
    })
}

/// `llmroute/<priority>` as the model: the body's own `llmroute` object
/// wins if it names a priority or weights.
fn choose_priority(obj: &mut Map<String, Value>, priority: String) -> Result<(), ApiError> {
    let routing = obj
        .entry("llmroute")
        .or_insert_with(|| Value::Object(Map::new()));
    if routing.is_null() {
        *routing = Value::Object(Map::new());
    }
    let Value::Object(r) = routing else {
        return Err(ApiError::bad_request("\"llmroute\" must be an object"));
    };
    if !r.contains_key("priority") && !r.contains_key("weights") {
        r.insert("priority".into(), Value::String(priority));
    }
    Ok(())
}

/// `x-llmroute-task`: the task of a request whose body names none.
pub fn task_of(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(v) = headers.get("x-llmroute-task") else {
        return Ok(None);
    };
    let t = v
        .to_str()
        .map_err(|_| ApiError::bad_request("x-llmroute-task must be plain ASCII"))?
        .trim();
    crate::core::learned::check_task(t)
        .map(|()| Some(t))
        .map_err(|e| ApiError::bad_request(format!("x-llmroute-task: {e}")))
}

/// `x-llmroute-cache-sampled: true`: this request takes a cached sample.
pub fn asks_for_cached_samples(headers: &HeaderMap) -> bool {
    headers
        .get("x-llmroute-cache-sampled")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}
/// `Cache-Control`: (`no-cache`, `no-store`).
pub fn cache_control(headers: &HeaderMap) -> (bool, bool) {
    let mut out = (false, false);
    for v in headers.get_all(header::CACHE_CONTROL) {
        for d in v.to_str().unwrap_or("").split(',') {
            match d.trim().to_ascii_lowercase().as_str() {
                "no-cache" => out.0 = true,
                "no-store" => out.1 = true,
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    fn call(body: &str) -> Result<Call, ApiError> {
        parse_call(body.as_bytes(), true, None)
    }

    #[test]
    fn a_max_tokens_that_is_not_whole_is_refused_as_such_under_a_cap() {
        let policy = Policy {
            max_tokens: Some(50),
            ..Policy::default()
        };
        let m = r#""messages":[{"role":"user","content":"hi"}]"#;
        for n in ["20.5", "100.5"] {
            let body = format!(r#"{{{m},"max_tokens":{n}}}"#);
            let e = parse_call(body.as_bytes(), true, Some(("k", &policy)))
                .err()
                .unwrap();
            assert!(e.message.contains("whole number"), "{n}: {}", e.message);
        }
        let body = format!(r#"{{{m},"max_tokens":100}}"#);
        let e = parse_call(body.as_bytes(), true, Some(("k", &policy)))
            .err()
            .unwrap();
        assert_eq!(e.code, "max_tokens_too_large");
    }

    #[test]
    fn model_names_route_pin_or_choose_a_priority() {
        let m = r#""messages":[{"role":"user","content":"hi"}]"#;
        assert_eq!(call(&format!("{{{m}}}")).unwrap().req.pinned, None);
        assert_eq!(
            call(&format!(r#"{{{m},"model":"llmroute/auto"}}"#))
                .unwrap()
                .req
                .pinned,
            None
        );
        let pinned = call(&format!(r#"{{{m},"model":"a/b"}}"#)).unwrap();
        assert_eq!(pinned.req.pinned.as_deref(), Some("a/b"));
        let speed = call(&format!(r#"{{{m},"model":"llmroute/speed"}}"#)).unwrap();
        assert_eq!(
            speed.req.overrides.unwrap().priority.as_deref(),
            Some("speed")
        );
        let own = call(&format!(
            r#"{{{m},"model":"llmroute/speed","llmroute":{{"priority":"cost"}}}}"#
        ))
        .unwrap();
        assert_eq!(own.req.overrides.unwrap().priority.as_deref(), Some("cost"));
    }

    #[test]
    fn streaming_is_read_and_never_part_of_the_key() {
        let m = r#""messages":[{"role":"user","content":"hi"}]"#;
        let s = call(&format!(
            r#"{{{m},"stream":true,"stream_options":{{"include_usage":true}}}}"#
        ))
        .unwrap();
        assert!(s.stream && s.include_usage);
        let plain = call(&format!("{{{m}}}")).unwrap();
        assert!(!plain.stream);
        assert_eq!(s.req.digest, plain.req.digest, "one cache entry for both");
        assert!(call(&format!(r#"{{{m},"stream":"yes"}}"#)).is_err());
        // As OpenAI: options of the wrong type are the client's mistake.
        for bad in [
            r#""stream_options":"x""#,
            r#""stream_options":{"include_usage":"yes"}"#,
            r#""stream_options":{"include_usage":1}"#,
        ] {
            let e = call(&format!(r#"{{{m},"stream":true,{bad}}}"#)).err();
            assert!(e.is_some(), "{bad}");
        }
        for fine in [
            r#""stream_options":null"#,
            r#""stream_options":{}"#,
            r#""stream_options":{"include_usage":null}"#,
        ] {
            let c = call(&format!(r#"{{{m},"stream":true,{fine}}}"#)).unwrap();
            assert!(!c.include_usage, "{fine}");
        }
    }

    #[test]
    fn bad_bodies_are_bad_requests() {
        for body in ["", "{", "[]", r#"{"messages":[]}"#, r#"{"model":"a"}"#] {
            let e = call(body).err().unwrap_or_else(|| panic!("{body}"));
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn cache_control_directives_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("No-Cache, max-age=0"),
        );
        assert_eq!(cache_control(&h), (true, false));
        h.append(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(cache_control(&h), (true, true));
    }
}
