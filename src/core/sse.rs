//! Server-sent events of a streamed chat completion (OpenAI's
//! `chat.completion.chunk`s): splitting them out of the bytes as they
//! arrive ([`Events`]), folding them into the whole completion they stand
//! for ([`Fold`], which is what the cache keeps), the usage a client sees
//! of them ([`UsageFilter`]), and the events that replay a whole completion
//! to a client that asked for a stream ([`replay`]).

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use crate::core::failure::Usage;

/// One event of a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A `data:` payload (the lines of one event joined by `\n`).
    Data(String),
    /// `data: [DONE]`: the stream is complete.
    Done,
}

/// Splits a byte stream into events. Comments (`: ...`) and fields other
/// than `data` are dropped, as a client would.
#[derive(Debug, Default)]
pub struct Events {
    /// The unfinished line.
    line: Vec<u8>,
    /// The data lines of the unfinished event.
    data: Option<String>,
}

impl Events {
    /// Reads `bytes`, pushing each event they complete onto `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(if data.trim() == "[DONE]" {
                        Event::Done
                    } else {
                        Event::Data(data)
                    });
                }
                continue;
            }
            let line = String::from_utf8_lossy(&line);
            let Some(value) = line.strip_prefix("data:") else {
                continue;
            };
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
    }
}

/// The bytes of one event carrying `data`.
pub fn frame(data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// The last event of a stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// A chunk that carries only usage (`choices` empty, or none): sent last,
/// and only to a client that asked for it (`stream_options.include_usage`).
pub fn is_usage_only(chunk: &Value) -> bool {
    chunk.get("usage").is_some_and(|u| !u.is_null())
        && chunk
            .get("choices")
            .is_none_or(|c| c.is_null() || c.as_array().is_some_and(Vec::is_empty))
}

/// The usage a client sees of a stream, as OpenAI streams it: asked for
/// (`stream_options.include_usage`), in a chunk of its own with
/// `"choices":[]`, the last before `[DONE]`; not asked for, no `usage`
/// field in any chunk. Upstreams, asked for usage (llmroute always asks, to
/// price the answer), send it in that chunk (OpenRouter), with
/// `"usage":null` in every other chunk too (OpenAI), or in the finish
/// chunk (llama.cpp's server).
#[derive(Debug, Default)]
pub struct UsageFilter {
    include: bool,
    /// The usage chunk made of usage that came in another chunk, to send
    /// before `[DONE]`.
    held: Option<Value>,
}

impl UsageFilter {
    /// `include`: the client asked for usage.
    pub fn new(include: bool) -> UsageFilter {
        UsageFilter {
            include,
            held: None,
        }
    }

    /// What to pass on of `chunk`, whose text is `data`: the text itself,
    /// the chunk rewritten, or nothing.
    pub fn pass<'a>(&mut self, data: &'a str, chunk: &Value) -> Option<Cow<'a, str>> {
        let Some(usage) = chunk.get("usage") else {
            return Some(Cow::Borrowed(data));
        };
        if is_usage_only(chunk) {
            // The upstream's own usage chunk is the one sent.
            self.held = None;
            return self.include.then_some(Cow::Borrowed(data));
        }
        if !self.include {
            return Some(Cow::Owned(without_usage(chunk, None).to_string()));
        }
        if usage.is_null() {
            return Some(Cow::Borrowed(data));
        }
        // Usage beside choices goes in a chunk of its own, sent last.
        let mut own = Map::new();
        for field in ["id", "object", "created", "model"] {
            if let Some(v) = chunk.get(field) {
                own.insert(field.into(), v.clone());
            }
        }
        own.insert("choices".into(), json!([]));
        own.insert("usage".into(), usage.clone());
        self.held = Some(Value::Object(own));
        Some(Cow::Owned(
            without_usage(chunk, Some(Value::Null)).to_string(),
        ))
    }

    /// The usage chunk to send before `[DONE]`, when the usage came in
    /// another chunk.
    pub fn last(&mut self) -> Option<String> {
        self.held.take().map(|c| c.to_string())
    }
}

/// `chunk` with its `usage` removed, or replaced by `with`.
fn without_usage(chunk: &Value, with: Option<Value>) -> Value {
    let mut out = chunk.clone();
    if let Some(o) = out.as_object_mut() {
        match with {
            Some(v) => {
                o.insert("usage".into(), v);
            }
            None => {
                o.remove("usage");
            }
        }
    }
    out
}

/// The error a chunk carries instead of choices, if it does.
pub fn error_of(chunk: &Value) -> Option<String> {
    let e = chunk.get("error")?;
    Some(
        e.get("message")
            .and_then(Value::as_str)
            .map_or_else(|| e.to_string(), str::to_string),
    )
}

/// The completion a stream's chunks add up to.
#[derive(Debug, Default)]
pub struct Fold {
    id: Option<Value>,
    model: Option<Value>,
    created: Option<Value>,
    /// By choice index: role, content, tool calls, finish reason.
    choices: Vec<Choice>,
    usage: Option<Value>,
    /// Content chunks seen.
    pub chunks: usize,
    /// `[DONE]` seen.
    pub done: bool,
}

#[derive(Debug, Default, Clone)]
struct Choice {
    role: Option<Value>,
    content: Option<String>,
    tool_calls: Vec<Value>,
    finish_reason: Option<Value>,
}

impl Fold {
    /// Adds one chunk.
    pub fn add(&mut self, chunk: &Value) {
        for (field, slot) in [
            ("id", &mut self.id),
            ("model", &mut self.model),
            ("created", &mut self.created),
        ] {
            if slot.is_none() {
                *slot = chunk.get(field).filter(|v| !v.is_null()).cloned();
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return;
        };
        for c in choices {
            let i = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if i >= 64 {
                continue;
            }
            if self.choices.len() <= i {
                self.choices.resize(i + 1, Choice::default());
            }
            let choice = &mut self.choices[i];
            if let Some(r) = c.get("finish_reason").filter(|r| !r.is_null()) {
                choice.finish_reason = Some(r.clone());
            }
            let Some(delta) = c.get("delta") else {
                continue;
            };
            if let Some(r) = delta.get("role").filter(|r| !r.is_null()) {
                choice.role = Some(r.clone());
            }
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                choice
                    .content
                    .get_or_insert_with(String::new)
                    .push_str(text);
                self.chunks += 1;
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    merge_tool_call(&mut choice.tool_calls, call);
                }
            }
        }
    }

    /// Adds one event; returns the chunk it carried, if it parsed.
    pub fn add_event(&mut self, event: &Event) -> Option<Value> {
        match event {
            Event::Done => {
                self.done = true;
                None
            }
            Event::Data(d) => {
                let chunk: Value = crate::core::surrogates::from_str(d).ok()?;
                self.add(&chunk);
                Some(chunk)
            }
        }
    }

    /// The usage the stream reported.
    pub fn usage(&self) -> Usage {
        self.usage
            .as_ref()
            .and_then(|u| serde_json::from_value(u.clone()).ok())
            .unwrap_or_default()
    }

    /// Whether every choice came to its end (a finish reason): a stream
    /// that stops without one, even with `[DONE]`, was cut short.
    pub fn finished(&self) -> bool {
        !self.choices.is_empty() && self.choices.iter().all(|c| c.finish_reason.is_some())
    }

    /// The first choice's content.
    pub fn content(&self) -> Option<&str> {
        self.choices.first()?.content.as_deref()
    }

    /// The whole completion, as a non-streamed request would have had it.
    pub fn completion(&self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut message = Map::new();
                message.insert(
                    "role".into(),
                    c.role.clone().unwrap_or_else(|| json!("assistant")),
                );
                message.insert(
                    "content".into(),
                    c.content.clone().map_or(Value::Null, Value::String),
                );
                if !c.tool_calls.is_empty() {
                    message.insert("tool_calls".into(), Value::Array(c.tool_calls.clone()));
                }
                json!({
                    "index": i,
                    "message": message,
                    "finish_reason": c.finish_reason.clone().unwrap_or(Value::Null),
                })
            })
            .collect();
        let mut out = Map::new();
        out.insert("id".into(), self.id.clone().unwrap_or(Value::Null));
        out.insert("object".into(), json!("chat.completion"));
        out.insert("created".into(), self.created.clone().unwrap_or(json!(0)));
        out.insert("model".into(), self.model.clone().unwrap_or(Value::Null));
        out.insert("choices".into(), Value::Array(choices));
        if let Some(u) = &self.usage {
            out.insert("usage".into(), u.clone());
        }
        Value::Object(out)
    }
}

/// A streamed tool call adds to the call of its `index`: its id, name and
/// type once, its arguments piece by piece.
fn merge_tool_call(calls: &mut Vec<Value>, delta: &Value) {
    let i = delta.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
    if i >= 128 {
        return;
    }
    while calls.len() <= i {
        calls.push(json!({"function": {"arguments": ""}}));
    }
    let call = &mut calls[i];
    for field in ["id", "type"] {
        if let Some(v) = delta.get(field).filter(|v| !v.is_null()) {
            call[field] = v.clone();
        }
    }
    if let Some(f) = delta.get("function") {
        if let Some(name) = f.get("name").filter(|v| !v.is_null()) {
            call["function"]["name"] = name.clone();
        }
        if let Some(args) = f.get("arguments").and_then(Value::as_str) {
            let mut all = call["function"]["arguments"]
                .as_str()
                .unwrap_or("")
                .to_string();
            all.push_str(args);
            call["function"]["arguments"] = Value::String(all);
        }
    }
}

/// The events that replay a whole completion as a stream: one chunk with
/// each choice's message (its role and its content, null beside tool
/// calls, as OpenAI's first delta has them), one with its finish reason,
/// the usage when asked for, then `[DONE]`.
pub fn replay(completion: &Value, include_usage: bool) -> Vec<u8> {
    let head = |choices: Value| {
        json!({
            "id": completion.get("id").cloned().unwrap_or(Value::Null),
            "object": "chat.completion.chunk",
            "created": completion.get("created").cloned().unwrap_or(json!(0)),
            "model": completion.get("model").cloned().unwrap_or(Value::Null),
            "choices": choices,
        })
    };
    let empty = Vec::new();
    let choices = completion
        .get("choices")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut out = Vec::new();
    let deltas: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut delta = c.get("message").cloned().unwrap_or_else(|| json!({}));
            // As OpenAI's first delta: a role, and `content` (null beside
            // tool calls) even when the message left them out.
            if let Some(d) = delta.as_object_mut() {
                d.entry("role").or_insert_with(|| json!("assistant"));
                d.entry("content").or_insert(Value::Null);
            }
            if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for (k, call) in calls.iter_mut().enumerate() {
                    call["index"] = json!(k);
                }
            }
            json!({"index": c.get("index").cloned().unwrap_or(json!(i)), "delta": delta, "finish_reason": null})
        })
        .collect();
    out.extend(frame(&head(Value::Array(deltas)).to_string()));
    let ends: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "index": c.get("index").cloned().unwrap_or(json!(i)),
                "delta": {},
                "finish_reason": c.get("finish_reason").cloned().unwrap_or(json!("stop")),
            })
        })
        .collect();
    out.extend(frame(&head(Value::Array(ends)).to_string()));
    if include_usage {
        if let Some(u) = completion.get("usage").filter(|u| !u.is_null()) {
            let mut chunk = head(json!([]));
            chunk["usage"] = u.clone();
            out.extend(frame(&chunk.to_string()));
        }
    }
    out.extend_from_slice(DONE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8], split: usize) -> Vec<Event> {
        let mut e = Events::default();
        let mut out = Vec::new();
        for piece in bytes.chunks(split.max(1)) {
            e.push(piece, &mut out);
        }
        out
    }

    const STREAM: &str = concat!(
        ": OPENROUTER PROCESSING\n\n",
        "data: {\"id\":\"c1\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\r\n\r\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"cost\":0.5}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn events_split_wherever_the_bytes_break() {
        let whole = events(STREAM.as_bytes(), usize::MAX);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole.last(), Some(&Event::Done));
        for split in [1, 2, 3, 7, 64] {
            assert_eq!(events(STREAM.as_bytes(), split), whole, "split {split}");
        }
    }

    #[test]
    fn multi_line_data_joins_with_newlines() {
        assert_eq!(
            events(b"data: a\ndata:b\n\n", 4),
            vec![Event::Data("a\nb".into())]
        );
        assert_eq!(frame("a\nb"), b"data: a\ndata: b\n\n".to_vec());
    }

    #[test]
    fn a_stream_that_ends_without_a_finish_reason_is_not_finished() {
        let mut fold = Fold::default();
        assert!(!fold.finished(), "nothing came");
        fold.add(
            &json!({"choices": [{"index": 0, "delta": {"content": "w1 "}, "finish_reason": null}]}),
        );
        fold.add_event(&Event::Done);
        assert!(fold.done && !fold.finished());
        fold.add(&json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}));
        assert!(fold.finished());
    }

    #[test]
    fn a_stream_folds_into_its_completion() {
        let mut fold = Fold::default();
        for e in events(STREAM.as_bytes(), 5) {
            fold.add_event(&e);
        }
        assert!(fold.done);
        assert!(fold.finished());
        assert_eq!(fold.chunks, 2);
        assert_eq!(fold.content(), Some("Hello"));
        let u = fold.usage();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cost),
            (Some(3), Some(2), Some(0.5))
        );
        let c = fold.completion();
        assert_eq!(c["object"], "chat.completion");
        assert_eq!(c["id"], "c1");
        assert_eq!(c["model"], "m");
        assert_eq!(c["choices"][0]["message"]["content"], "Hello");
        assert_eq!(c["choices"][0]["message"]["role"], "assistant");
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert_eq!(c["usage"]["completion_tokens"], 2);
    }

    #[test]
    fn tool_calls_gather_their_arguments() {
        let mut fold = Fold::default();
        fold.add(&json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}}]}));
        fold.add(&json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}));
        let c = fold.completion();
        let call = &c["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "t");
        assert_eq!(call["function"]["name"], "f");
        assert_eq!(call["function"]["arguments"], "{\"a\":1}");
    }

    #[test]
    fn a_replay_folds_back_into_the_same_completion() {
        let mut fold = Fold::default();
        for e in events(STREAM.as_bytes(), 9) {
            fold.add_event(&e);
        }
        let whole = fold.completion();
        for usage in [true, false] {
            let mut again = Fold::default();
            let evs = events(&replay(&whole, usage), 3);
            assert_eq!(evs.last(), Some(&Event::Done));
            let usage_chunks = evs
                .iter()
                .filter_map(|e| again.add_event(e))
                .filter(is_usage_only)
                .count();
            assert_eq!(usage_chunks, usize::from(usage));
            assert_eq!(again.content(), Some("Hello"));
            assert_eq!(again.completion()["choices"], whole["choices"]);
        }
    }

    /// What a client sees of `chunks` through a filter: the chunks passed
    /// on, and the usage chunk sent before `[DONE]`.
    fn filtered(chunks: &[Value], include: bool) -> Vec<Value> {
        let mut f = UsageFilter::new(include);
        let mut out: Vec<Value> = chunks
            .iter()
            .filter_map(|c| {
                let text = c.to_string();
                let passed = f.pass(&text, c)?;
                Some(serde_json::from_str(&passed).unwrap())
            })
            .collect();
        out.extend(f.last().map(|t| serde_json::from_str(&t).unwrap()));
        out
    }

    #[test]
    fn usage_comes_in_a_chunk_of_its_own_and_only_when_asked_for() {
        let usage = json!({"prompt_tokens": 3, "completion_tokens": 2});
        let text = json!([{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]);
        let stop = json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]);
        let chunk = |choices: &Value, usage: Option<&Value>| {
            let mut c = json!({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m", "choices": choices});
            if let Some(u) = usage {
                c["usage"] = u.clone();
            }
            c
        };
        let null = Value::Null;
        let own = chunk(&json!([]), Some(&usage));
        let upstreams = [
            // OpenRouter: a usage chunk of its own.
            vec![chunk(&text, None), chunk(&stop, None), own.clone()],
            // OpenAI: and `"usage": null` in every other chunk.
            vec![
                chunk(&text, Some(&null)),
                chunk(&stop, Some(&null)),
                own.clone(),
            ],
            // llama.cpp's server: in the finish chunk.
            vec![chunk(&text, None), chunk(&stop, Some(&usage))],
            // A usage chunk without `choices`.
            vec![
                chunk(&text, None),
                chunk(&stop, None),
                json!({"id": "c1", "usage": usage}),
            ],
        ];
        for chunks in &upstreams {
            let without = filtered(chunks, false);
            assert_eq!(without.len(), 2, "{without:?}");
            assert!(
                without.iter().all(|c| c.get("usage").is_none()),
                "{without:?}"
            );
            assert_eq!(without[1]["choices"], stop);
            let with = filtered(chunks, true);
            assert_eq!(with.len(), 3, "{with:?}");
            assert!(with[..2].iter().all(|c| c["usage"].is_null()), "{with:?}");
            assert_eq!(with[1]["choices"], stop);
            assert!(is_usage_only(&with[2]), "{with:?}");
            assert_eq!(with[2]["usage"], usage);
            assert_eq!(with[2]["id"], "c1");
        }
        // A chunk without usage passes as it came.
        let mut f = UsageFilter::new(false);
        assert!(matches!(
            f.pass("{\"choices\":[]}", &json!({"choices": []})),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn a_replayed_tool_call_starts_as_openai_streams_one() {
        let calls = json!([{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]);
        // OpenAI's message of a tool call has `"content": null`; some
        // upstreams leave `content` (and `role`) out.
        for message in [
            json!({"role": "assistant", "content": null, "tool_calls": calls}),
            json!({"tool_calls": calls}),
        ] {
            let whole = json!({"id": "c", "model": "m", "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]});
            let evs = events(&replay(&whole, false), 7);
            let chunks: Vec<Value> = evs
                .iter()
                .filter_map(|e| match e {
                    Event::Data(d) => serde_json::from_str(d).ok(),
                    Event::Done => None,
                })
                .collect();
            let first = &chunks[0]["choices"][0]["delta"];
            assert_eq!(first.get("content"), Some(&Value::Null), "{first}");
            assert_eq!(first["role"], "assistant");
            assert_eq!(first["tool_calls"][0]["index"], 0);
            assert_eq!(first["tool_calls"][0]["id"], "call_1");
            assert_eq!(chunks[1]["choices"][0]["finish_reason"], "tool_calls");
            let mut fold = Fold::default();
            evs.iter().for_each(|e| {
                fold.add_event(e);
            });
            let again = fold.completion();
            assert_eq!(again["choices"][0]["message"]["content"], Value::Null);
            assert_eq!(again["choices"][0]["message"]["tool_calls"], calls);
        }
    }

    #[test]
    fn a_replay_has_no_usage_chunk_without_usage() {
        let whole = json!({"id": "c", "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}], "usage": null});
        let text = String::from_utf8(replay(&whole, true)).unwrap();
        assert!(!text.contains("usage"), "{text}");
    }

    #[test]
    fn errors_and_usage_chunks_are_told_apart() {
        assert!(is_usage_only(&json!({"choices": [], "usage": {"a": 1}})));
        assert!(!is_usage_only(&json!({"choices": [{}], "usage": {"a": 1}})));
        assert_eq!(
            error_of(&json!({"error": {"message": "overloaded", "code": 502}})).as_deref(),
            Some("overloaded")
        );
        assert_eq!(error_of(&json!({"choices": []})), None);
    }
}
