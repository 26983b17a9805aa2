//! JSON response bodies: completions, errors, usage.

use std::borrow::Cow;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Appends `s` JSON-escaped, without quotes.
pub(crate) fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

pub(crate) fn write_error_body(out: &mut Vec<u8>, code: u16, message: &str) {
    let _ = write!(out, "{{\"error\":{{\"code\":{code},\"message\":\"");
    push_escaped(out, message);
    out.extend_from_slice(b"\"}}");
}

/// The text of a message's content: the string itself, or its JSON text.
fn content_text(message: &Value) -> Cow<'_, str> {
    match message.get("content") {
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(other) => Cow::Owned(other.to_string()),
        None => Cow::Borrowed(""),
    }
}

/// The messages of a chat request (none when it has no `messages` array).
fn messages(request: &Value) -> &[Value] {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The content of a successful answer to `request` as `model`:
/// `[<model>] <last message content>`.
pub(crate) fn answer_content(model: &str, request: &Value) -> String {
    let last = messages(request)
        .last()
        .map_or(Cow::Borrowed(""), content_text);
    format!("[{model}] {last}")
}

/// Prompt and completion token counts: a quarter of the characters of every
/// message's content, plus one; a quarter of the answer's characters, plus one.
fn token_counts(request: &Value, content_chars: usize) -> (usize, usize) {
    let prompt_chars: usize = messages(request)
        .iter()
        .map(|m| content_text(m).chars().count())
        .sum();
    (prompt_chars / 4 + 1, content_chars / 4 + 1)
}

/// Writes `"usage":{…}` for an answer of `content_chars` characters.
pub(crate) fn write_usage(
    out: &mut Vec<u8>,
    request: &Value,
    content_chars: usize,
    cost: Option<f64>,
) {
    let (prompt_tokens, completion_tokens) = token_counts(request, content_chars);
    let _ = write!(
        out,
        "\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"completion_tokens\":{completion_tokens},\"total_tokens\":{}",
        prompt_tokens + completion_tokens
    );
    if let Some(cost) = cost {
        out.extend_from_slice(b",\"cost\":");
        let _ = serde_json::to_writer(&mut *out, &cost);
    }
    out.push(b'}');
}

/// Seconds since the Unix epoch, for `created`.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes a chat completion answering `request` as `model` whose content is
/// `content` followed by `pad` filler characters.
pub(crate) fn write_completion(
    out: &mut Vec<u8>,
    id: u64,
    model: &str,
    request: &Value,
    content: &str,
    cost: Option<f64>,
    pad: usize,
) {
    let created = unix_now();
    let _ = write!(
        out,
        "{{\"id\":\"gen-{id}\",\"object\":\"chat.completion\",\"created\":{created},\"model\":\""
    );
    push_escaped(out, model);
    out.extend_from_slice(
        b"\",\"provider\":\"fake\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"",
    );
    push_escaped(out, content);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\"},\"finish_reason\":\"stop\"}],");
    write_usage(out, request, content.chars().count() + pad, cost);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn completion_body_is_valid_json() {
        let request = json!({
            "model": "a/\"b\"",
            "messages": [
                {"role": "system", "content": "be\nbrief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            ],
        });
        let mut out = Vec::new();
        let content = answer_content("a/\"b\"", &request);
        write_completion(&mut out, 7, "a/\"b\"", &request, &content, Some(0.25), 3);
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["id"], "gen-7");
        assert_eq!(v["model"], "a/\"b\"");
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(content, r#"[a/"b"] [{"text":"hi","type":"text"}]xxx"#);
        assert_eq!(v["usage"]["cost"], 0.25);
    }

    #[test]
    fn escaping_control_characters() {
        let mut out = Vec::new();
        push_escaped(&mut out, "a\u{1}b\"c\\d\té");
        let s = format!("\"{}\"", String::from_utf8(out).unwrap());
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\u{1}b\"c\\d\té");
    }
}
