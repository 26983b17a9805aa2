//! Requests from other sites: a web page open in a browser can make it
//! send a POST to any address, loopback included, with a "simple" body
//! (`text/plain`, a form) that needs no preflight. Such a request must
//! never reach the upstream and spend the key. So every POST and DELETE
//! is refused when the browser says it comes from another site
//! (`Sec-Fetch-Site: cross-site`, or an `Origin` that is neither this
//! server nor an allowed one), and a POST whose body is not JSON gets 415.
//! The dashboard's sign-in form is the one body that is not JSON; its own
//! handler checks its origin.

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};

use super::errors::ApiError;

/// The paths whose POST body is not JSON (the dashboard's sign-in form,
/// and its sign-out, which has none).
const FORM_PATHS: [&str; 2] = ["/dashboard/login", "/dashboard/logout"];

/// Why `req` is refused, if it is: 403 for another site, 415 for a body
/// that is not JSON. `allowed` are the origins `--cors-origin` lets in,
/// lower case, without trailing slashes.
pub fn refuse(req: &Request, allowed: &[String]) -> Option<ApiError> {
    let method = req.method();
    if method != Method::POST && method != Method::DELETE {
        return None;
    }
    let headers = req.headers();
    // A header whose bytes are not text is `Some(None)`: present, and not
    // read as absent, so that each check below fails closed on it.
    let text = |name: &str| headers.get(name).map(|v| v.to_str().ok());
    let origin = text(header::ORIGIN.as_str());
    let allowed_origin = origin.flatten().is_some_and(|o| is_allowed(o, allowed));
    let cross_site = text("sec-fetch-site")
        .is_some_and(|s| s.is_none_or(|s| s.eq_ignore_ascii_case("cross-site")));
    let host = text(header::HOST.as_str()).flatten();
    let foreign_origin = origin.is_some_and(|o| o.is_none_or(|o| !same_origin(o, host)));
    if (cross_site || foreign_origin) && !allowed_origin {
        return Some(ApiError::forbidden(format!(
            "a {} from another site ({}) is refused; start the server with --cors-origin to let a web app call it",
            method,
            headers.get(header::ORIGIN).map_or("Sec-Fetch-Site: cross-site".to_string(), |o| {
                crate::core::failure::snippet(o.as_bytes())
            })
        )));
    }
    if method == Method::POST && !FORM_PATHS.contains(&req.uri().path()) && has_body(req) {
        let json = text(header::CONTENT_TYPE.as_str())
            .flatten()
            .is_some_and(is_json);
        if !json {
            return Some(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "unsupported_media_type",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
    }
    None
}

/// Whether the request says it has a body.
fn has_body(req: &Request) -> bool {
    let headers = req.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) => n > 0,
        None => {
            headers.contains_key(header::TRANSFER_ENCODING)
                || headers.contains_key(header::CONTENT_TYPE)
        }
    }
}

/// `application/json`, or a `+json` type, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let (kind, sub) = essence.split_once('/').unwrap_or(("", ""));
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json") || sub.to_ascii_lowercase().ends_with("+json"))
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request
/// was sent to.
pub fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    authority
        .trim_end_matches('/')
        .eq_ignore_ascii_case(host.trim())
}

fn is_allowed(origin: &str, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

/// An origin as `--cors-origin` takes it: `scheme://host[:port]`, lower
/// case, without a path; an error in words otherwise.
pub fn parse_origin(text: &str) -> Result<String, String> {
    if text.contains('*') {
        return Err(format!(
            "--cors-origin {text}: no wildcard; name each origin a browser app is served from, such as https://app.example.com"
        ));
    }
    let url = url::Url::parse(text.trim())
        .map_err(|e| format!("--cors-origin {text}: not an origin ({e})"))?;
    let plain = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !plain {
        return Err(format!(
            "--cors-origin {text}: an origin is scheme://host[:port], such as https://app.example.com"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    const JSON: (&str, &str) = ("content-type", "application/json");
    const HOST: (&str, &str) = ("host", "127.0.0.1:8080");

    #[test]
    fn a_cross_site_post_is_refused_whatever_its_body() {
        for headers in [
            vec![
                HOST,
                ("content-type", "text/plain"),
                ("sec-fetch-site", "cross-site"),
            ],
            vec![HOST, JSON, ("origin", "https://evil.example")],
            vec![HOST, JSON, ("origin", "null")],
            vec![HOST, ("sec-fetch-site", "cross-site")],
        ] {
            let e = refuse(&req("POST", "/v1/chat/completions", &headers), &[]).unwrap();
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{headers:?}");
        }
        let e = refuse(
            &req(
                "DELETE",
                "/cache",
                &[HOST, ("origin", "https://evil.example")],
            ),
            &[],
        );
        assert!(e.is_some());
    }

    #[test]
    fn a_body_that_is_not_json_is_415() {
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let r = req(
                "POST",
                "/v1/chat/completions",
                &[HOST, ("content-type", ct), ("content-length", "5")],
            );
            assert_eq!(
                refuse(&r, &[]).unwrap().status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{ct}"
            );
        }
        let no_type = req("POST", "/route", &[HOST, ("content-length", "5")]);
        assert!(refuse(&no_type, &[]).is_some());
    }

    #[test]
    fn same_origin_allowed_origins_and_plain_clients_pass() {
        let ok = |headers: &[(&str, &str)], allowed: &[String]| {
            refuse(&req("POST", "/v1/chat/completions", headers), allowed).is_none()
        };
        assert!(
            ok(&[HOST, JSON, ("content-length", "2")], &[]),
            "a plain client"
        );
        assert!(ok(
            &[HOST, ("content-type", "application/json; charset=utf-8")],
            &[]
        ));
        assert!(ok(
            &[
                HOST,
                JSON,
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin")
            ],
            &[]
        ));
        let app = vec!["https://app.example.com".to_string()];
        assert!(ok(
            &[
                HOST,
                JSON,
                ("origin", "https://app.example.com"),
                ("sec-fetch-site", "cross-site")
            ],
            &app
        ));
        assert!(!ok(
            &[HOST, JSON, ("origin", "https://other.example.com")],
            &app
        ));
        // GETs are not refused; the sign-in form is not JSON.
        assert!(refuse(
            &req("GET", "/v1/models", &[("origin", "https://evil.example")]),
            &[]
        )
        .is_none());
        assert!(refuse(
            &req(
                "POST",
                "/dashboard/login",
                &[
                    HOST,
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("content-length", "9")
                ]
            ),
            &[]
        )
        .is_none());
    }

    /// A request with raw header bytes: `Request::builder` takes `&str`.
    fn raw(headers: &[(&'static str, &[u8])]) -> Request {
        let mut r = req("POST", "/v1/chat/completions", &[HOST]);
        for (k, v) in headers {
            let value = axum::http::HeaderValue::from_bytes(v).unwrap();
            r.headers_mut().insert(*k, value);
        }
        r
    }

    #[test]
    fn header_bytes_that_are_not_text_fail_closed() {
        // Bytes past ASCII are allowed on the wire but are not text: a check
        // that cannot read its header must refuse, not pass the request.
        let foreign: &[u8] = b"https://\xe9vil.example";
        let e = refuse(&raw(&[("origin", foreign), JSON_RAW]), &[]).unwrap();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        let site: &[u8] = b"cross-site\xff";
        let e = refuse(&raw(&[("sec-fetch-site", site), JSON_RAW]), &[]).unwrap();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        let kind: &[u8] = b"application/json\xff";
        let e = refuse(
            &raw(&[("content-type", kind), ("content-length", b"2")]),
            &[],
        )
        .unwrap();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    const JSON_RAW: (&str, &[u8]) = ("content-type", b"application/json");

    #[test]
    fn origins_are_checked_and_normalised() {
        assert_eq!(
            parse_origin("https://App.Example.com/").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            parse_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert!(parse_origin("app.example.com").is_err());
        assert!(parse_origin("https://app.example.com/path").is_err());
        assert!(parse_origin("ftp://x").is_err());
        // A wildcard says what it is, rather than being taken literally
        // (no browser sends it) or failing as a URL.
        for w in ["*", "https://*.example.com"] {
            let e = parse_origin(w).unwrap_err();
            assert!(e.contains("no wildcard"), "{w}: {e}");
        }
    }
}
