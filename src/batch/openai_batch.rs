//! Output lines in OpenAI's batch output shape (`--output-format
//! openai-batch`), so that tools that read OpenAI batch results read
//! llmroute's:
//!
//! ```json
//! {"id":"batch_req_…","custom_id":"r-7","response":{"status_code":200,"request_id":"req_…","body":{…}},"error":null}
//! ```
//!
//! An answer's `body` is the upstream body, verbatim. A line that failed
//! with an HTTP status from the API gets that status and an OpenAI error
//! body (`{"error":{"message","type","param","code"}}`), as OpenAI's own
//! error file does; a line that got no HTTP answer (invalid input, no
//! eligible model, the budget, a network failure) gets `"response": null`
//! and `"error": {"code", "message"}`, with llmroute's error type as code.

use serde::Serialize;
use serde_json::Value;

use super::output::Line;

#[derive(Serialize)]
struct Head<'a> {
    id: String,
    custom_id: &'a Value,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ApiError<'a>,
}

#[derive(Serialize)]
struct ApiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: Option<()>,
}

#[derive(Serialize)]
struct LineError<'a> {
    code: &'a str,
    message: &'a str,
}

/// Appends `line` in OpenAI's batch output shape, and its newline.
pub fn write(line: &Line, run_id: &str, out: &mut Vec<u8>) {
    let head = Head {
        id: format!("batch_req_{run_id}_{}", line.line),
        custom_id: &line.id,
    };
    serde_json::to_writer(&mut *out, &head).expect("serialising to a Vec cannot fail");
    out.pop(); // the closing brace
    let request_id = format!("req_{run_id}_{}", line.line);
    let status = line.attempts.last().and_then(|a| a.status);
    match (&line.response, &line.error, status) {
        (Some(body), None, _) => {
            response(out, 200, &request_id, body.as_bytes());
            out.extend_from_slice(b",\"error\":null}\n");
        }
        (_, Some(e), Some(code)) if code >= 400 => {
            let body = serde_json::to_vec(&ErrorBody {
                error: ApiError {
                    message: &e.message,
                    kind: e.kind,
                    param: None,
                    code: None,
                },
            })
            .expect("serialising to a Vec cannot fail");
            response(out, code, &request_id, &body);
            out.extend_from_slice(b",\"error\":null}\n");
        }
        (_, e, _) => {
            let (code, message) = match e {
                Some(e) => (e.kind, e.message.as_str()),
                None => ("no_answer", "no answer"),
            };
            out.extend_from_slice(b",\"response\":null,\"error\":");
            serde_json::to_writer(&mut *out, &LineError { code, message })
                .expect("serialising to a Vec cannot fail");
            out.extend_from_slice(b"}\n");
        }
    }
}

/// `,"response":{"status_code":…,"request_id":…,"body":BODY}`, the body
/// spliced in as it is (compact JSON already).
fn response(out: &mut Vec<u8>, status: u16, request_id: &str, body: &[u8]) {
    out.extend_from_slice(
        format!(",\"response\":{{\"status_code\":{status},\"request_id\":").as_bytes(),
    );
    serde_json::to_writer(&mut *out, request_id).expect("serialising to a Vec cannot fail");
    out.extend_from_slice(b",\"body\":");
    out.extend_from_slice(body);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::output::{error_type, Attempt};
    use serde_json::json;

    fn shaped(line: &Line) -> Value {
        let mut out = Vec::new();
        write(line, "r1", &mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn an_answer_is_a_200_response_with_the_upstream_body() {
        let line = Line {
            id: json!("req-7"),
            line: 3,
            model: Some("m/x".into()),
            response: Some(r#"{"choices":[{"message":{"content":"hi"}}]}"#.into()),
            ..Default::default()
        };
        assert_eq!(
            shaped(&line),
            json!({
                "id": "batch_req_r1_3",
                "custom_id": "req-7",
                "response": {
                    "status_code": 200,
                    "request_id": "req_r1_3",
                    "body": {"choices": [{"message": {"content": "hi"}}]}
                },
                "error": null
            })
        );
    }

    #[test]
    fn an_api_refusal_keeps_its_status_and_other_failures_are_errors() {
        let mut refused = Line::error(json!("a"), 1, error_type::BAD_REQUEST, "too long");
        refused.attempts = vec![Attempt {
            model: "m".into(),
            status: Some(400),
            error: Some("too long".into()),
            latency_ms: 1.0,
        }];
        let v = shaped(&refused);
        assert_eq!(v["response"]["status_code"], 400);
        assert_eq!(v["response"]["body"]["error"]["message"], "too long");
        assert_eq!(v["response"]["body"]["error"]["type"], "bad_request");
        assert_eq!(v["error"], Value::Null);

        let bad = Line::error(json!(null), 2, error_type::INVALID_INPUT, "not JSON");
        let v = shaped(&bad);
        assert_eq!(v["response"], Value::Null);
        assert_eq!(
            v["error"],
            json!({"code": "invalid_input", "message": "not JSON"})
        );
        assert_eq!(v["custom_id"], Value::Null);
    }
}
