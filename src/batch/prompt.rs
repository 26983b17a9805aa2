//! One prompt from the command line (`--prompt TEXT`): a batch of one
//! shorthand line, whose output line is kept back and then printed as the
//! answer's text (or, with `--json`, as it is).

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::reader::Source;

/// The one input line of `prompt`: `{"prompt": "..."}`.
pub fn source(prompt: &str) -> Source {
    let mut line = serde_json::to_vec(&serde_json::json!({ "prompt": prompt }))
        .expect("a JSON object serialises");
    line.push(b'\n');
    Source::Text(line)
}

/// The run's output, kept in memory until the run has ended.
#[derive(Clone, Default)]
pub struct Kept(Arc<Mutex<Vec<u8>>>);

impl Kept {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Write for Kept {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What to print for the output line `line`: on stdout, and on stderr.
#[derive(Debug, PartialEq, Eq)]
pub struct Shown {
    pub stdout: Vec<u8>,
    pub stderr: Option<String>,
}

/// The answer's text and a newline; with `json`, or when there is no
/// text (a dry run), the line itself. The line's error goes to stderr.
pub fn show(line: &[u8], json: bool) -> Shown {
    let parsed: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    let stderr = parsed["error"]["message"]
        .as_str()
        .map(|m| format!("llmroute: error: {m}"));
    let stdout = match parsed["content"].as_str() {
        Some(text) if !json => format!("{text}\n").into_bytes(),
        _ if stderr.is_some() && !json => Vec::new(),
        _ => line.to_vec(),
    };
    Shown { stdout, stderr }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_the_line_or_the_error() {
        let answered = br#"{"line":1,"error":null,"content":"4"}
"#;
        assert_eq!(show(answered, false).stdout, b"4\n");
        assert_eq!(show(answered, true).stdout, answered);
        assert_eq!(show(answered, false).stderr, None);

        let failed = br#"{"line":1,"error":{"type":"upstream_error","message":"no"},"content":null}
"#;
        let shown = show(failed, false);
        assert_eq!(shown.stdout, b"");
        assert_eq!(shown.stderr.as_deref(), Some("llmroute: error: no"));
        assert_eq!(show(failed, true).stdout, failed);

        let planned = br#"{"line":1,"error":null,"content":null,"dry_run":true}
"#;
        assert_eq!(show(planned, false).stdout, planned);
    }

    #[test]
    fn the_prompt_is_one_shorthand_line() {
        let Source::Text(bytes) = source("say \"hi\"\nplease") else {
            panic!("not text");
        };
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["prompt"], "say \"hi\"\nplease");
    }
}
