//! Property tests on the library: the line parser takes any bytes without
//! panicking, and the cache key depends on a request's content only, not on
//! its key order, whitespace, string escapes or id.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Number, Value};

use llmroute::core::cachekey::{key, write_canonical};
use llmroute::core::request::parse_line;

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Keys that collide often, including ones that need escaping and the
/// names the parser gives a meaning to.
fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id".to_string()),
        Just("custom_id".to_string()),
        Just("model".to_string()),
        Just("prompt".to_string()),
        Just("messages".to_string()),
        Just("max_tokens".to_string()),
        Just("llmroute".to_string()),
        "[a-c]{1,2}",
        "\\PC{0,6}",
        "[\"\\\\/\\x00-\\x1fé😀]{1,3}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        "\\PC{0,12}".prop_map(Value::String),
        "[\"\\\\\\x00-\\x1f\\x7f\\x{2028}]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key_name(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    btree_map(key_name(), json(), 0..8).prop_map(|m| m.into_iter().collect())
}

/// How to write a JSON text: key order, whitespace, string escapes.
#[derive(Debug, Clone)]
struct Style {
    /// Rotates each object's keys by this much (then reverses when odd).
    shuffle: usize,
    /// Whitespace put around tokens.
    space: &'static str,
    /// Escapes every non-ASCII and every `/` in strings.
    escape_all: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (
        0usize..7,
        prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t\r\n")],
        any::<bool>(),
    )
        .prop_map(|(shuffle, space, escape_all)| Style {
            shuffle,
            space,
            escape_all,
        })
}

fn write_string(s: &str, st: &Style, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if st.escape_all => out.push_str("\\/"),
            c if (c as u32) < 0x20 || (st.escape_all && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `v` in a style of its own: keys in another order, whitespace
/// everywhere, strings escaped differently. It means the same JSON.
fn write_styled(v: &Value, st: &Style, out: &mut String) {
    let sp = st.space;
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            if !entries.is_empty() {
                let k = st.shuffle % entries.len();
                entries.rotate_left(k);
                if st.shuffle % 2 == 1 {
                    entries.reverse();
                }
            }
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(sp);
                write_string(k, st, out);
                out.push_str(sp);
                out.push(':');
                out.push_str(sp);
                write_styled(v, st, out);
            }
            out.push_str(sp);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(sp);
                write_styled(item, st, out);
            }
            out.push_str(sp);
            out.push(']');
        }
        Value::String(s) => write_string(s, st, out),
        other => out.push_str(&other.to_string()),
    }
}

fn canonical(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(v, &mut out);
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_line_takes_any_bytes(bytes in vec(any::<u8>(), 0..256)) {
        let _ = parse_line(&bytes);
    }

    #[test]
    fn parse_line_takes_any_json(v in json()) {
        let _ = parse_line(v.to_string().as_bytes());
    }

    /// Lines shaped like requests, with fields of any type, then damaged.
    #[test]
    fn parse_line_takes_damaged_requests(
        mut obj in object(),
        prompt in json(),
        messages in json(),
        llmroute in json(),
        cut in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        damage in 0u8..3,
    ) {
        obj.insert("prompt".into(), prompt);
        if damage == 0 {
            obj.remove("prompt");
            obj.insert("messages".into(), messages);
        }
        obj.insert("llmroute".into(), llmroute);
        let mut line = Value::Object(obj).to_string().into_bytes();
        let at = cut.index(line.len() + 1);
        match damage {
            1 => line.truncate(at),
            2 => line.insert(at, byte),
            _ => {}
        }
        if let Ok(req) = parse_line(&line) {
            // What the parser accepts is a routable request.
            let messages = req.body.get("messages").and_then(Value::as_array);
            prop_assert!(messages.is_some_and(|m| !m.is_empty()));
            for k in ["id", "custom_id", "llmroute", "model", "prompt"] {
                prop_assert!(!req.body.contains_key(k), "{} left in the body", k);
            }
            let _ = key(&req.body, "fp", &mut Vec::new());
        }
    }

    #[test]
    fn canonical_form_ignores_key_order_whitespace_and_escapes(v in json(), st in style()) {
        let mut text = String::new();
        write_styled(&v, &st, &mut text);
        let styled: Value = serde_json::from_str(&text).map_err(|e| {
            TestCaseError::fail(format!("{e}: {text}"))
        })?;
        let compact: Value = serde_json::from_str(&v.to_string()).unwrap();
        let canon = canonical(&compact);
        prop_assert_eq!(&canonical(&styled), &canon);
        // Canonical text is compact JSON.
        prop_assert!(serde_json::from_slice::<Value>(&canon).is_ok());
        prop_assert!(!canon.contains(&b'\n'));
        prop_assert!(!canon.starts_with(b" ") && !canon.ends_with(b" "));
    }

    #[test]
    fn cache_key_ignores_key_order_and_whitespace(
        body in object(),
        st in style(),
        fp in "\\PC{0,20}",
    ) {
        let mut text = String::new();
        write_styled(&Value::Object(body.clone()), &st, &mut text);
        let styled: Map<String, Value> = serde_json::from_str(&text).unwrap();
        let compact: Map<String, Value> =
            serde_json::from_str(&Value::Object(body).to_string()).unwrap();
        let mut scratch = vec![b'x'; 3];
        prop_assert_eq!(
            key(&styled, &fp, &mut scratch),
            key(&compact, &fp, &mut Vec::new())
        );
    }

    #[test]
    fn cache_key_ignores_the_id_and_how_the_line_is_written(
        mut body in object(),
        id1 in json(),
        id2 in json(),
        st in style(),
    ) {
        // And the fields read as numbers, which a line must give as such.
        for k in ["id", "custom_id", "llmroute", "model", "prompt", "messages", "method", "url", "body",
                  "max_tokens", "max_completion_tokens", "n"] {
            body.remove(k);
        }
        body.insert("messages".into(), serde_json::json!([{"role": "user", "content": "hi"}]));
        let mut a = body.clone();
        a.insert("id".into(), id1);
        let mut b = body;
        b.insert("id".into(), id2);
        let mut text_b = String::new();
        write_styled(&Value::Object(b), &st, &mut text_b);
        let ra = parse_line(Value::Object(a).to_string().as_bytes()).unwrap();
        let rb = parse_line(text_b.as_bytes()).unwrap();
        prop_assert_eq!(&ra.body, &rb.body);
        let mut s = Vec::new();
        prop_assert_eq!(key(&ra.body, "fp", &mut s), key(&rb.body, "fp", &mut s));
    }

    #[test]
    fn cache_key_changes_with_the_content(
        a in object(),
        b in object(),
        extra in json(),
        fp in "\\PC{0,8}",
    ) {
        let mut s = Vec::new();
        if a != b {
            prop_assert_ne!(key(&a, &fp, &mut s), key(&b, &fp, &mut s));
        }
        // One more field, or one field changed, is another request.
        let mut grown = a.clone();
        grown.insert("\u{0}extra".into(), extra.clone());
        prop_assert_ne!(key(&a, &fp, &mut s), key(&grown, &fp, &mut s));
        if let Some((k, v)) = a.iter().next() {
            let mut changed = a.clone();
            let new = if v == &extra { Value::Array(vec![extra]) } else { extra };
            changed.insert(k.clone(), new);
            prop_assert_ne!(key(&a, &fp, &mut s), key(&changed, &fp, &mut s));
        }
    }

    #[test]
    fn cache_key_changes_with_the_routing_fingerprint(
        a in object(),
        b in object(),
        fa in "\\PC{0,8}",
        fb in "\\PC{0,8}",
    ) {
        let mut s = Vec::new();
        let same = canonical(&Value::Object(a.clone())) == canonical(&Value::Object(b.clone()))
            && fa == fb;
        prop_assert_eq!(key(&a, &fa, &mut s) == key(&b, &fb, &mut s), same);
    }
}

proptest! {
    #![proptest_config(config())]

    /// README: "The parameters are passed upstream untouched."
    #[test]

    fn numbers_are_passed_upstream_untouched(
        f in any::<f64>().prop_filter("finite", |f| f.is_finite()),
    ) {
        let text = Value::from(f).to_string();
        let line = format!("{{\"prompt\":\"x\",\"temperature\":{text}}}");
        let req = parse_line(line.as_bytes()).unwrap();
        prop_assert_eq!(req.body["temperature"].to_string(), text);
    }
}
