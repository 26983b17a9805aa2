//! Parsing one input line into a [`Request`].
//!
//! Three forms are accepted, all JSON objects on one line:
//! 1. an OpenAI chat-completions body (`messages` plus generation parameters);
//! 2. an OpenAI Batch API line (`custom_id`, `method`, `url`, `body`);
//! 3. shorthand: `{"prompt": "...", "system": "..."}`.
//!
//! `id`/`custom_id` are echoed back, the `llmroute` object overrides routing
//! for the line, and `model` other than `"auto"` pins a model. None of these
//! go upstream, nor do `stream` and `stream_options` (the call is never
//! streamed); every other field does, untouched.

use serde_json::{Map, Value};

use crate::core::cachekey::{self, BodyDigest};
use crate::core::failure::{error_type, INTERNAL_MESSAGE};
use crate::core::overrides::{kind, parse_overrides};
pub use crate::core::overrides::{Overrides, MAX_LISTED_MODELS};

/// Completion tokens assumed when a request sets no `max_tokens`.
pub const DEFAULT_COMPLETION_TOKENS: u64 = 512;
/// Tokens counted per message on top of its text (role, separators).
const TOKENS_PER_MESSAGE: u64 = 4;

/// Fields of a line that a batch never sends: streaming, as the answer is
/// written whole anyway.
pub const NOT_SENT_IN_A_BATCH: [&str; 2] = ["stream", "stream_options"];

/// One routable request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The echoed `id` or `custom_id` (`null` when absent).
    pub id: Value,
    /// The body sent upstream, without `model`, as parsed. Emptied by
    /// [`Request::prepare`]: from then on `wire` and `digest` stand for it.
    pub body: Map<String, Value>,
    /// The body serialised once (without `model`), filled in by [`Request::prepare`].
    pub wire: Vec<u8>,
    /// The body's share of the cache key, filled in by [`Request::prepare`]
    /// for a run that uses the cache.
    pub digest: Option<BodyDigest>,
    /// A model named by the line (not `"auto"`).
    pub pinned: Option<String>,
    /// The line's own routing settings.
    pub overrides: Option<Overrides>,
    /// Estimated prompt tokens (about four bytes of text a token).
    pub prompt_tokens: u64,
    /// `max_tokens` / `max_completion_tokens`, when given.
    pub max_tokens: Option<u64>,
    /// Parameters a model must support to take this request.
    pub needs_tools: bool,
    pub needs_response_format: bool,
    /// The choices asked for (`n`, 1 when absent): each is a completion,
    /// and costs as one.
    pub choices: u64,
}

impl Request {
    /// Serialises the body for the wire and, for a run that uses the cache
    /// (`keyed`), hashes it: compact, keys sorted (serde_json's `Map`), it is
    /// the canonical form. Then drops the parsed body. The reader thread
    /// does this for every line, so that the sending thread does not.
    pub fn prepare(&mut self, keyed: bool) {
        // Sized from the messages' text (four bytes a token) and a little
        // for the rest, so that the body is seldom copied as it grows.
        let guess = (self.prompt_tokens as usize)
            .saturating_mul(4)
            .saturating_add(256);
        let mut wire = Vec::with_capacity(guess.min(1 << 20));
        serde_json::to_writer(&mut wire, &self.body).expect("a JSON map serialises");
        self.wire = wire;
        if keyed {
            self.digest = Some(cachekey::digest_canonical(&self.wire));
        }
        self.body = Map::new();
    }

    /// The models it names: pinned, then `llmroute.models` and `fallback`.
    pub fn named_models(&self) -> impl Iterator<Item = &String> {
        let o = self.overrides.as_ref();
        self.pinned
            .iter()
            .chain(o.and_then(|o| o.models.as_ref()).into_iter().flatten())
            .chain(o.and_then(|o| o.fallback.as_ref()).into_iter().flatten())
    }

    /// The names it gives that are echoed or kept as given, each with the
    /// field it came from: its `id`, the models it names, its task and
    /// its priority.
    pub fn labels(&self) -> impl Iterator<Item = (&'static str, &str)> {
        fn list<'a>(
            field: &'static str,
            l: Option<&'a Vec<String>>,
        ) -> impl Iterator<Item = (&'static str, &'a str)> {
            l.into_iter().flatten().map(move |m| (field, m.as_str()))
        }
        fn one<'a>(field: &'static str, t: Option<&'a String>) -> Option<(&'static str, &'a str)> {
            t.map(|t| (field, t.as_str()))
        }
        let o = self.overrides.as_ref();
        (self.id.as_str().map(|id| ("id", id)).into_iter())
            .chain(one("model", self.pinned.as_ref()))
            .chain(one("model", o.and_then(|o| o.hint.as_ref())))
            .chain(list("llmroute.models", o.and_then(|o| o.models.as_ref())))
            .chain(list(
                "llmroute.fallback",
                o.and_then(|o| o.fallback.as_ref()),
            ))
            .chain(one("llmroute.task", o.and_then(|o| o.task.as_ref())))
            .chain(one(
                "llmroute.priority",
                o.and_then(|o| o.priority.as_ref()),
            ))
    }

    /// The request's task: its `llmroute.task`, else the default task.
    pub fn task(&self) -> &str {
        self.overrides
            .as_ref()
            .and_then(|o| o.task.as_deref())
            .unwrap_or(crate::core::learned::DEFAULT_TASK)
    }

    /// Gives the request `task` when it names none itself.
    pub fn default_task(&mut self, task: &str) {
        let o = self.overrides.get_or_insert_with(Overrides::default);
        if o.task.is_none() {
            o.task = Some(task.to_string());
        }
    }

    /// Under `--route-all` (`route_all`), or when the line's `llmroute.route`
    /// is true, the model the request names stops pinning it and becomes a
    /// hint that routing may override. Returns whether it did.
    pub fn pin_as_hint(&mut self, route_all: bool) -> bool {
        let wanted = self
            .overrides
            .as_ref()
            .and_then(|o| o.route)
            .unwrap_or(route_all);
        if !wanted || self.pinned.is_none() {
            return false;
        }
        let hint = self.pinned.take();
        self.overrides.get_or_insert_with(Overrides::default).hint = hint;
        true
    }

    /// Completion tokens to plan for: `max_tokens`, else the default.
    pub fn completion_tokens(&self) -> u64 {
        self.max_tokens.unwrap_or(DEFAULT_COMPLETION_TOKENS)
    }
}

/// Why a line is not a request. `id` is echoed when it could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    pub id: Value,
    pub message: String,
    /// The output line's `error.type`: `invalid_input`, or `internal_error`
    /// for a line llmroute itself failed on.
    pub kind: &'static str,
}

impl InputError {
    fn new(id: &Value, message: impl Into<String>) -> Self {
        InputError {
            id: id.clone(),
            message: message.into(),
            kind: error_type::INVALID_INPUT,
        }
    }

    /// A line the reader failed on: a bug, not the line's fault.
    pub fn internal() -> Self {
        InputError {
            id: Value::Null,
            message: INTERNAL_MESSAGE.into(),
            kind: error_type::INTERNAL,
        }
    }
}

/// Whether a line is blank (only whitespace, after a UTF-8 byte order
/// mark if it has one), and so skipped.
pub fn is_blank(line: &[u8]) -> bool {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    line.iter().all(u8::is_ascii_whitespace)
}

/// Parses one line (without its newline; a trailing `\r` and a UTF-8 byte
/// order mark are ignored). Blank lines must be filtered out by the caller.
pub fn parse_line(line: &[u8]) -> Result<Request, InputError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|e| {
        InputError::new(
            &Value::Null,
            format!(
                "line is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    // Half an emoji (a lone surrogate escape) loses no line.
    let value: Value = crate::core::surrogates::from_str(text)
        .map_err(|e| InputError::new(&Value::Null, format!("invalid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(InputError::new(
            &Value::Null,
            format!("expected a JSON object, got {}", kind(&value)),
        ));
    };
    parse_object(obj)
}

/// Whether `obj` is an OpenAI Batch API line (`body`, with `method` or
/// `url`) rather than a chat body.
pub fn is_batch_line(obj: &Map<String, Value>) -> bool {
    obj.contains_key("body") && (obj.contains_key("method") || obj.contains_key("url"))
}

/// Parses a request already read as a JSON object (a server's body); as
/// [`parse_line`] does after reading the line.
pub fn parse_object(mut obj: Map<String, Value>) -> Result<Request, InputError> {
    let id = match (obj.remove("custom_id"), obj.remove("id")) {
        (Some(cid), _) if !cid.is_null() => cid,
        (_, Some(id)) => id,
        _ => Value::Null,
    };
    let top_overrides = obj.remove("llmroute");

    let mut body = if is_batch_line(&obj) {
        batch_body(obj, &id)?
    } else {
        obj
    };
    let overrides = match top_overrides.or_else(|| body.remove("llmroute")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_overrides(v).map_err(|m| InputError::new(&id, m))?),
    };
    body.remove("id");
    body.remove("custom_id");
    // A batch writes each answer whole: the call is never streamed, so a
    // streamed reply is not refused as "not a JSON completion" on every
    // candidate (each a billed call).
    for streaming in NOT_SENT_IN_A_BATCH {
        body.remove(streaming);
    }

    if body.contains_key("prompt") {
        if body.contains_key("messages") {
            return Err(InputError::new(
                &id,
                "a line has either \"messages\" or \"prompt\", not both",
            ));
        }
        shorthand(&mut body, &id)?;
    }
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        Some(Value::Array(_)) => return Err(InputError::new(&id, "\"messages\" is empty")),
        Some(other) => {
            return Err(InputError::new(
                &id,
                format!("\"messages\" must be an array, got {}", kind(other)),
            ))
        }
        None => return Err(InputError::new(&id, "no \"messages\" or \"prompt\" field")),
    }

    let pinned = pinned_model(body.remove("model"), &id)?;

    // With both, the larger: an API may follow either, and the budget and
    // the rate limits must hold whichever it follows.
    let mut max_tokens: Option<u64> = None;
    for field in ["max_tokens", "max_completion_tokens"] {
        let n = whole(&mut body, field, 0, u64::MAX, &id)?;
        max_tokens = max_tokens.max(n);
    }
    let prompt_tokens = estimate_prompt_tokens(&body);
    let needs_tools = body.get("tools").is_some_and(|v| !v.is_null());
    let needs_response_format = body.get("response_format").is_some_and(|v| !v.is_null());
    let choices = whole(&mut body, "n", 1, MAX_CHOICES, &id)?.unwrap_or(1);

    Ok(Request {
        id,
        body,
        wire: Vec::new(),
        digest: None,
        pinned,
        overrides,
        prompt_tokens,
        max_tokens,
        needs_tools,
        needs_response_format,
        choices,
    })
}

/// What a client's `model` asks for, where a client can set nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// No model, `"auto"` or `"llmroute/auto"`: routed with the set priority.
    Auto,
    /// `"llmroute/<priority>"`: routed with that priority (or preset).
    Priority(String),
    /// Any other model: pinned.
    Pinned(String),
}

/// The prefix of the names that choose how to route rather than a model.
pub const ROUTE_PREFIX: &str = "llmroute/";

/// Reads a client's `model` name.
pub fn model_choice(model: Option<&str>) -> ModelChoice {
    match model.map(str::trim) {
        None | Some("" | "auto") => ModelChoice::Auto,
        Some(m) => match m.strip_prefix(ROUTE_PREFIX) {
            Some("auto") => ModelChoice::Auto,
            Some(p) => ModelChoice::Priority(p.to_string()),
            None => ModelChoice::Pinned(m.to_string()),
        },
    }
}

/// The body sent upstream: `model` first, then the fields `extra`
/// (`,"k":v...`, or nothing), then the request's own (`wire`, a JSON
/// object), without re-serialising them for every attempt.
pub fn upstream_body(model: &str, extra: &[u8], wire: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(wire.len() + model.len() + extra.len() + 12);
    body.extend_from_slice(b"{\"model\":");
    serde_json::to_writer(&mut body, model).expect("writing to a Vec cannot fail");
    body.extend_from_slice(extra);
    if wire.len() > 2 {
        body.push(b',');
        body.extend_from_slice(&wire[1..]);
    } else {
        body.push(b'}');
    }
    body
}

/// The model a line's `model` field pins, if any (`"auto"` pins none).
fn pinned_model(model: Option<Value>, id: &Value) -> Result<Option<String>, InputError> {
    match model {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(m)) if m == "auto" || m.trim().is_empty() => Ok(None),
        Some(Value::String(m)) => Ok(Some(m)),
        Some(other) => Err(InputError::new(
            id,
            format!("\"model\" must be a string, got {}", kind(&other)),
        )),
    }
}

fn batch_body(mut obj: Map<String, Value>, id: &Value) -> Result<Map<String, Value>, InputError> {
    if let Some(method) = obj.get("method").and_then(Value::as_str) {
        if !method.eq_ignore_ascii_case("POST") {
            return Err(InputError::new(
                id,
                format!("batch line has method {method}; only POST is supported"),
            ));
        }
    }
    if let Some(url) = obj.get("url").and_then(Value::as_str) {
        if !url.trim_end_matches('/').ends_with("/chat/completions") {
            return Err(InputError::new(
                id,
                format!("batch line targets {url}; only /v1/chat/completions is supported"),
            ));
        }
    }
    match obj.remove("body") {
        Some(Value::Object(body)) => Ok(body),
        Some(other) => Err(InputError::new(
            id,
            format!("batch \"body\" must be an object, got {}", kind(&other)),
        )),
        None => Err(InputError::new(id, "batch line has no \"body\"")),
    }
}

fn shorthand(body: &mut Map<String, Value>, id: &Value) -> Result<(), InputError> {
    let prompt = match body.remove("prompt") {
        Some(Value::String(p)) => p,
        Some(other) => {
            return Err(InputError::new(
                id,
                format!("\"prompt\" must be a string, got {}", kind(&other)),
            ))
        }
        None => unreachable!("checked by the caller"),
    };
    let mut messages = Vec::with_capacity(2);
    match body.remove("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            messages.push(serde_json::json!({"role": "system", "content": s}))
        }
        Some(other) => {
            return Err(InputError::new(
                id,
                format!("\"system\" must be a string, got {}", kind(&other)),
            ))
        }
    }
    messages.push(serde_json::json!({"role": "user", "content": prompt}));
    body.insert("messages".into(), Value::Array(messages));
    Ok(())
}

/// The most choices (`n`) a request may ask for (OpenAI's own cap).
pub const MAX_CHOICES: u64 = 128;

/// A field that must be a whole number in `lo..=hi` when given: a string or
/// fraction is refused, not left for an API to read as it likes (past caps).
fn whole(
    body: &mut Map<String, Value>,
    field: &str,
    lo: u64,
    hi: u64,
    id: &Value,
) -> Result<Option<u64>, InputError> {
    let v = match body.get_mut(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    // Past u64: the most there is (no model takes it, and says so).
    let n = v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f.min(u64::MAX as f64) as u64)
    });
    match n {
        Some(n) if (lo..=hi).contains(&n) => {
            // Written as a float (`1e3`, `2.0`), it goes upstream as the
            // integer it is: an API that checks types refuses `1000.0`.
            // Past 2^53 a float is no exact integer, and is left as sent.
            if v.is_f64() && n <= 1 << 53 {
                *v = Value::from(n);
            }
            Ok(Some(n))
        }
        _ if hi == u64::MAX => Err(InputError::new(
            id,
            format!("\"{field}\" must be a whole number of at least {lo}, not {v}"),
        )),
        _ => Err(InputError::new(
            id,
            format!("\"{field}\" must be a whole number from {lo} to {hi}, not {v}"),
        )),
    }
}

/// What a part of a message's content that is not text (an image, an
/// audio clip, a file) counts for: about what the largest image costs at
/// the providers that bill them by size, not the bytes of its data URL.
pub const NON_TEXT_PART_TOKENS: u64 = 1_600;

/// The fields of a body besides its messages that an API bills as input:
/// tool and function definitions, and the schema an answer must follow.
const BILLED_BESIDES_MESSAGES: [&str; 4] = ["tools", "functions", "response_format", "tool_choice"];

/// About four bytes of text a token, plus a few tokens a message: every
/// string of a message (its content, name, tool calls' arguments), a
/// fixed amount for each part of its content that is not text, and the
/// tool definitions and answer schema as JSON.
pub fn estimate_prompt_tokens(body: &Map<String, Value>) -> u64 {
    let messages = body.get("messages").and_then(Value::as_array);
    let in_messages: u64 = messages
        .into_iter()
        .flatten()
        .map(|m| {
            let (bytes, parts) = message_bytes(m);
            TOKENS_PER_MESSAGE + (bytes as u64).div_ceil(4) + parts * NON_TEXT_PART_TOKENS
        })
        .sum();
    let besides: usize = BILLED_BESIDES_MESSAGES
        .iter()
        .filter_map(|f| body.get(*f))
        .filter(|v| !v.is_null())
        .map(json_len)
        .sum();
    in_messages + (besides as u64).div_ceil(4)
}

/// The bytes of the strings of a message but its role, and its content's
/// parts that are not text.
fn message_bytes(m: &Value) -> (usize, u64) {
    let Value::Object(fields) = m else {
        return (0, 0);
    };
    let mut bytes = 0;
    let mut parts = 0;
    for (name, v) in fields {
        match (name.as_str(), v) {
            ("role", _) => {}
            ("content", Value::Array(items)) => {
                for part in items {
                    match part.get("text").and_then(Value::as_str) {
                        Some(text) => bytes += text.len(),
                        None => parts += 1,
                    }
                }
            }
            (_, v) => bytes += string_bytes(v),
        }
    }
    (bytes, parts)
}

/// The bytes of every string in `v`.
fn string_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(string_bytes).sum(),
        Value::Object(o) => o.values().map(string_bytes).sum(),
        _ => 0,
    }
}

/// The length of `v` written as compact JSON, counted without writing it.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(line: &str) -> Request {
        parse_line(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {}", e.message))
    }

    fn err(line: &[u8]) -> InputError {
        parse_line(line).expect_err("should be refused")
    }

    #[test]
    fn prepare_serialises_and_hashes_the_body_once() {
        let line = r#"{"id":"p","model":"x/y","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#;
        let parsed = ok(line);
        let want_key = cachekey::key(&parsed.body, "fp", &mut Vec::new());
        let mut r = parsed.clone();
        r.prepare(true);
        let wire: Value = serde_json::from_slice(&r.wire).unwrap();
        assert_eq!(
            wire,
            json!({"messages":[{"role":"user","content":"hi"}],"temperature":0.5})
        );
        assert_eq!(r.digest.as_ref().map(|d| d.key("fp")), Some(want_key));
        assert!(r.body.is_empty(), "the parsed body is dropped");
        let mut unkeyed = parsed;
        unkeyed.prepare(false);
        assert_eq!(unkeyed.wire, r.wire);
        assert!(unkeyed.digest.is_none());
    }

    #[test]
    fn the_wire_is_the_canonical_form() {
        // Keys out of order at every depth, keys whose byte order differs
        // from their char order, numbers in forms JSON allows, escapes.
        let line = r#"{"zeta":1,"messages":[{"role":"user","content":"a\"b\u00e9\n","name":"x"}],"Z":true,"é":{"b":[3,{"y":null,"x":1.50}],"a":-0.0},"e":"\u2028","temperature":1e2,"big":10000000000000000000000,"ä":0}"#;
        let mut r = ok(line);
        let mut canonical = Vec::new();
        cachekey::write_object(&r.body, &mut canonical);
        let keyed = cachekey::digest(&r.body, &mut Vec::new());
        r.prepare(true);
        assert_eq!(
            String::from_utf8(r.wire.clone()).unwrap(),
            String::from_utf8(canonical).unwrap()
        );
        assert!(
            r.digest == Some(keyed),
            "the same key as the canonical form's"
        );
    }

    #[test]
    fn chat_form_passes_parameters_untouched() {
        let r = ok(
            r#"{"id":"a1","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":50,"tools":[{"type":"function"}]}"#,
        );
        assert_eq!(r.id, json!("a1"));
        assert_eq!(r.body["temperature"], json!(0.2));
        assert_eq!(r.max_tokens, Some(50));
        assert!(r.needs_tools && !r.needs_response_format);
        assert!(!r.body.contains_key("id"));
        assert_eq!(r.pinned, None);
    }

    #[test]
    fn the_upstream_body_gets_the_model_first() {
        let body = |m, extra: &[u8], wire: &[u8]| upstream_body(m, extra, wire);
        assert_eq!(
            body("a/b", b"", br#"{"messages":[]}"#),
            br#"{"model":"a/b","messages":[]}"#.to_vec()
        );
        assert_eq!(body("a\"b", b"", b"{}"), br#"{"model":"a\"b"}"#.to_vec());
        let v: Value =
            serde_json::from_slice(&body("m", br#","s":true"#, br#"{"x":1,"y":[2]}"#)).unwrap();
        assert_eq!(v, serde_json::json!({"model":"m","s":true,"x":1,"y":[2]}));
    }

    #[test]
    fn model_names_choose_routing_or_pin() {
        assert_eq!(model_choice(None), ModelChoice::Auto);
        assert_eq!(model_choice(Some("auto")), ModelChoice::Auto);
        assert_eq!(model_choice(Some("llmroute/auto")), ModelChoice::Auto);
        assert_eq!(
            model_choice(Some("llmroute/speed")),
            ModelChoice::Priority("speed".into())
        );
        assert_eq!(
            model_choice(Some("openai/gpt-5.4")),
            ModelChoice::Pinned("openai/gpt-5.4".into())
        );
    }

    #[test]
    fn an_object_parses_as_its_line_does() {
        let line = r#"{"id":7,"messages":[{"role":"user","content":"hi"}],"llmroute":{"priority":"cost"}}"#;
        let Value::Object(obj) = serde_json::from_str(line).unwrap() else {
            unreachable!()
        };
        assert_eq!(
            parse_object(obj).unwrap(),
            parse_line(line.as_bytes()).unwrap()
        );
    }

    #[test]
    fn streaming_is_never_asked_for() {
        let r = ok(
            r#"{"prompt":"x","stream":true,"stream_options":{"include_usage":true},"temperature":1}"#,
        );
        assert!(!r.body.contains_key("stream") && !r.body.contains_key("stream_options"));
        assert_eq!(r.body["temperature"], 1);
    }

    #[test]
    fn batch_form_uses_body_and_custom_id() {
        let r = ok(
            r#"{"custom_id":"req-7","method":"POST","url":"/v1/chat/completions","body":{"model":"openai/gpt-5.4-mini","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}}"#,
        );
        assert_eq!(r.id, json!("req-7"));
        assert_eq!(r.pinned.as_deref(), Some("openai/gpt-5.4-mini"));
        assert!(r.needs_response_format);
        assert!(!r.body.contains_key("model"));
        let e = err(
            br#"{"custom_id":"e","method":"POST","url":"/v1/embeddings","body":{"input":"x"}}"#,
        );
        assert_eq!(e.id, json!("e"));
        assert!(e.message.contains("/v1/embeddings"));
        // A batch tool matches results by custom_id, whatever id says.
        let r = ok(
            r#"{"custom_id":"r9","id":"also","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"x"}]}}"#,
        );
        assert_eq!(r.id, json!("r9"));
        assert_eq!(
            ok(r#"{"id":"i","custom_id":null,"prompt":"x"}"#).id,
            json!("i")
        );
    }

    #[test]
    fn token_and_choice_counts_are_whole_numbers_in_range() {
        assert_eq!(ok(r#"{"prompt":"x","max_tokens":5.0}"#).max_tokens, Some(5));
        assert_eq!(
            ok(r#"{"prompt":"x","max_completion_tokens":7}"#).max_tokens,
            Some(7)
        );
        assert_eq!(ok(r#"{"prompt":"x","n":3}"#).choices, 3);
        for bad in [
            r#"{"prompt":"x","max_tokens":"500000"}"#,
            r#"{"prompt":"x","max_tokens":-5}"#,
            r#"{"prompt":"x","max_tokens":2.5}"#,
            r#"{"prompt":"x","max_completion_tokens":true}"#,
            r#"{"prompt":"x","n":1000}"#,
            r#"{"prompt":"x","n":0}"#,
            r#"{"prompt":"x","n":"2"}"#,
        ] {
            let e = err(bad.as_bytes());
            assert!(e.message.contains("whole number"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn shorthand_builds_messages() {
        let r = ok(r#"{"prompt":"2+2?","system":"be brief","max_tokens":5}"#);
        assert_eq!(
            r.body["messages"],
            json!([{"role":"system","content":"be brief"},{"role":"user","content":"2+2?"}])
        );
        assert_eq!(r.body["max_tokens"], json!(5));
        assert!(!r.body.contains_key("prompt") && !r.body.contains_key("system"));
        let r = ok(r#"{"prompt":"hi"}"#);
        assert_eq!(r.body["messages"], json!([{"role":"user","content":"hi"}]));
    }

    #[test]
    fn llmroute_object_is_read_and_removed() {
        let r = ok(
            r#"{"prompt":"x","llmroute":{"priority":"cost","models":["a/b","c/d"],"fallback":"e/f,g/h","weights":{"latency":1,"cost":1}}}"#,
        );
        let o = r.overrides.unwrap();
        assert_eq!(o.priority.as_deref(), Some("cost"));
        assert_eq!(o.models.unwrap(), vec!["a/b", "c/d"]);
        assert_eq!(o.fallback.unwrap(), vec!["e/f", "g/h"]);
        assert_eq!(o.weights.unwrap().latency, 0.5);
        assert!(!r.body.contains_key("llmroute"));
        for empty in [r#"[]"#, r#"" , ""#] {
            let line = format!(r#"{{"prompt":"x","llmroute":{{"models":{empty}}}}}"#);
            let e = err(line.as_bytes());
            assert!(
                e.message.contains("lists no model"),
                "{empty}: {}",
                e.message
            );
        }
        assert!(err(br#"{"prompt":"x","llmroute":{"speed":1}}"#)
            .message
            .contains("llmroute.speed"));
        assert!(
            err(br#"{"prompt":"x","llmroute":{"weights":{"latency":-1}}}"#)
                .message
                .contains("negative")
        );
    }

    #[test]
    fn route_all_makes_a_pin_a_hint_unless_the_line_says_otherwise() {
        let batch = r#"{"custom_id":"r","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}}"#;
        let mut r = ok(batch);
        assert!(!r.pin_as_hint(false));
        assert_eq!(r.pinned.as_deref(), Some("gpt-4o-mini"));
        assert!(r.pin_as_hint(true));
        assert_eq!(r.pinned, None);
        assert_eq!(r.overrides.unwrap().hint.as_deref(), Some("gpt-4o-mini"));

        let mut own = ok(r#"{"prompt":"x","model":"m/n","llmroute":{"route":true}}"#);
        assert!(own.pin_as_hint(false), "the line asks for it");
        let mut kept = ok(r#"{"prompt":"x","model":"m/n","llmroute":{"route":false}}"#);
        assert!(!kept.pin_as_hint(true), "the line keeps its pin");
        assert_eq!(kept.pinned.as_deref(), Some("m/n"));
        assert!(err(br#"{"prompt":"x","llmroute":{"route":"yes"}}"#)
            .message
            .contains("llmroute.route"));
    }

    #[test]
    fn model_auto_is_not_a_pin() {
        assert_eq!(ok(r#"{"prompt":"x","model":"auto"}"#).pinned, None);
        assert_eq!(
            ok(r#"{"prompt":"x","model":"m/n"}"#).pinned.as_deref(),
            Some("m/n")
        );
        assert!(err(br#"{"prompt":"x","model":5}"#)
            .message
            .contains("model"));
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(err(b"{not json").message.starts_with("invalid JSON"));
        assert!(err(b"[1,2]").message.contains("an array"));
        assert!(err(b"\"str\"").message.contains("a string"));
        assert!(err(br#"{"id":9,"foo":1}"#)
            .message
            .contains("no \"messages\""));
        assert_eq!(err(br#"{"id":9,"foo":1}"#).id, json!(9));
        assert!(err(b"{\"prompt\":\"\xff\"}").message.contains("UTF-8"));
        assert!(err(br#"{"messages":[]}"#).message.contains("empty"));
        assert!(err(br#"{"messages":{}}"#).message.contains("array"));
        assert!(
            err(br#"{"prompt":"a","messages":[{"role":"user","content":"b"}]}"#)
                .message
                .contains("not both")
        );
        assert!(err(br#"{"prompt":7}"#).message.contains("string"));
    }

    #[test]
    fn a_line_of_a_byte_order_mark_alone_is_blank() {
        // A file saved empty by an editor that writes one.
        assert!(is_blank(b"\xEF\xBB\xBF"));
        assert!(is_blank(b"\xEF\xBB\xBF \r"));
        assert!(!is_blank(b"\xEF\xBB\xBFx"));
        assert!(!is_blank(b"\xEF\xBB"));
    }

    #[test]
    fn with_both_limits_the_larger_is_planned_for() {
        for body in [
            br#"{"prompt":"x","max_tokens":1,"max_completion_tokens":100000}"#.as_slice(),
            br#"{"prompt":"x","max_completion_tokens":100000,"max_tokens":1}"#.as_slice(),
        ] {
            assert_eq!(parse_line(body).unwrap().max_tokens, Some(100_000));
        }
    }

    #[test]
    fn whole_numbers_written_as_floats_go_upstream_as_integers() {
        // `1e3` passes as a whole number; an API that checks types would
        // refuse `1000.0`.
        let r = parse_line(br#"{"prompt":"x","max_tokens":1e3,"n":2.0,"max_completion_tokens":7}"#)
            .unwrap();
        assert_eq!(r.max_tokens, Some(1000));
        assert_eq!(
            serde_json::to_string(&r.body["max_tokens"]).unwrap(),
            "1000"
        );
        assert_eq!(serde_json::to_string(&r.body["n"]).unwrap(), "2");
        assert_eq!(
            serde_json::to_string(&r.body["max_completion_tokens"]).unwrap(),
            "7"
        );
    }

    #[test]
    fn crlf_and_bom_are_tolerated() {
        let r = parse_line(b"\xEF\xBB\xBF{\"prompt\":\"x\"}\r").unwrap();
        assert_eq!(r.body["messages"][0]["content"], json!("x"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(err(deep.as_bytes()).message.starts_with("invalid JSON"));
    }

    #[test]
    fn token_estimate() {
        let r = ok(
            r#"{"messages":[{"role":"user","content":"abcdefgh"},{"role":"user","content":[{"type":"text","text":"abcd"},{"type":"image_url"}]}]}"#,
        );
        assert_eq!(r.prompt_tokens, (4 + 2) + (4 + 1 + NON_TEXT_PART_TOKENS));
        assert_eq!(r.completion_tokens(), DEFAULT_COMPLETION_TOKENS);
    }

    #[test]
    fn what_an_api_bills_as_input_is_in_the_estimate() {
        // 40,000 bytes are about 10,000 tokens wherever a request holds them.
        let big = "x".repeat(40_000);
        let user = json!({"role": "user", "content": "hi"});
        let bodies = [
            json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "description": big}}]}),
            json!({"messages": [user, {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": big}}]}]}),
            json!({"messages": [user, {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": big}]}]}),
            json!({"messages": [user], "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": big}}}}),
            json!({"messages": [{"role": "user", "name": big, "content": "hi"}]}),
            json!({"messages": [user], "functions": [{"name": "f", "description": big}]}),
        ];
        for body in bodies {
            let r = ok(&body.to_string());
            assert!(
                (10_000..10_200).contains(&r.prompt_tokens),
                "{} for {}",
                r.prompt_tokens,
                &body.to_string()[..120]
            );
        }
        // An image counts as an image, not as the bytes of its data URL.
        let image = format!("data:image/png;base64,{big}");
        let r = ok(&json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is it?"},
            {"type": "image_url", "image_url": {"url": image}}
        ]}]})
        .to_string());
        assert_eq!(r.prompt_tokens, 4 + 3 + NON_TEXT_PART_TOKENS);
    }

    #[test]
    fn blank() {
        assert!(is_blank(b"   \t\r"));
        assert!(is_blank(b""));
        assert!(!is_blank(b" {}"));
    }
}
