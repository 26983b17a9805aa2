//! HTTP/1.1 framing: parsing request heads, routing, writing response heads.

use std::io::Write as _;
use std::ops::Range;

/// Largest accepted request head (request line plus headers).
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// A parsed request head; ranges index the connection's read buffer.
pub(crate) struct Head {
    pub(crate) method: Range<usize>,
    pub(crate) target: Range<usize>,
    /// The header lines (without the request line and the final blank line).
    pub(crate) headers: Range<usize>,
    /// Bytes up to and including the blank line ending the head.
    pub(crate) len: usize,
    pub(crate) content_length: Option<usize>,
    pub(crate) chunked: bool,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
    pub(crate) authorization: Option<Range<usize>>,
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

/// Offset of `sub` (a subslice of `base`) within `base`.
fn offset_in(base: &[u8], sub: &[u8]) -> usize {
    sub.as_ptr() as usize - base.as_ptr() as usize
}

/// Iterates over `(name, value)` pairs of header lines.
pub(crate) fn header_lines(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block.split(|&b| b == b'\n').filter_map(|line| {
        let line = trim(line);
        if line.is_empty() {
            return None;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        Some((trim(&line[..colon]), trim(&line[colon + 1..])))
    })
}

/// Parses a request head. `Ok(None)` means more bytes are needed.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, &'static str> {
    // Tolerate empty lines before the request line.
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let Some(end) = find(&buf[start..], b"\r\n\r\n").map(|e| e + start) else {
        return Ok(None);
    };
    let head = &buf[..end];
    let line_end = find(&head[start..], b"\r\n").map_or(end, |e| e + start);
    let request_line = &head[start..line_end];
    if std::str::from_utf8(request_line).is_err() {
        return Err("malformed request line");
    }
    let mut parts = request_line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    let mut keep_alive = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return Err("unsupported HTTP version"),
    };
    let headers = (line_end + 2).min(end)..end;
    let mut content_length = None;
    let mut chunked = false;
    let mut expect_continue = false;
    let mut authorization = None;
    for (name, value) in header_lines(&buf[headers.clone()]) {
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or("invalid content-length")?;
            if content_length.is_some_and(|old| old != n) {
                return Err("conflicting content-length");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&b| b == b',').next().map(trim).unwrap_or(b"");
            if last.eq_ignore_ascii_case(b"chunked") {
                chunked = true;
            } else if !last.eq_ignore_ascii_case(b"identity") {
                return Err("unsupported transfer-encoding");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"authorization") {
            let at = offset_in(buf, value);
            authorization = Some(at..at + value.len());
        }
    }
    let method_at = offset_in(buf, method);
    let target_at = offset_in(buf, target);
    Ok(Some(Head {
        method: method_at..method_at + method.len(),
        target: target_at..target_at + target.len(),
        headers,
        len: end + 4,
        content_length,
        chunked,
        keep_alive,
        expect_continue,
        authorization,
    }))
}

/// The part of a request target used for routing (no query string).
pub(crate) fn route_path(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

pub(crate) enum Route {
    Models,
    Completions,
    WrongMethod,
    NotFound,
}

pub(crate) fn route(method: &str, target: &str) -> Route {
    let path = route_path(target);
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.ends_with("/chat/completions") {
        if method == "POST" {
            Route::Completions
        } else {
            Route::WrongMethod
        }
    } else if path.ends_with("/models") {
        if method == "GET" {
            Route::Models
        } else {
            Route::WrongMethod
        }
    } else {
        Route::NotFound
    }
}

pub(crate) fn bearer_matches(value: &[u8], key: &str) -> bool {
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    value[..space].eq_ignore_ascii_case(b"bearer") && trim(&value[space + 1..]) == key.as_bytes()
}

pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        418 => "I'm a teapot",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Status",
    }
}

pub(crate) fn write_head(
    out: &mut Vec<u8>,
    code: u16,
    content_length: Option<usize>,
    header: Option<(&str, &str)>,
    close: bool,
) {
    let _ = write!(
        out,
        "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\n",
        reason(code)
    );
    if let Some(len) = content_length {
        let _ = write!(out, "content-length: {len}\r\n");
    }
    if let Some((name, value)) = header {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_head_reads_headers() {
        let raw = b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\nAuthorization: Bearer k\r\n\r\nrest";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(&raw[head.method.clone()], b"POST");
        assert_eq!(&raw[head.target.clone()], b"/api/v1/chat/completions");
        assert_eq!(head.content_length, Some(12));
        assert!(!head.keep_alive);
        assert_eq!(&raw[head.authorization.clone().unwrap()], b"Bearer k");
        assert_eq!(&raw[head.len..], b"rest");
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        assert!(parse_head(b"GET /\r\n\r\n").is_err());
    }
}
