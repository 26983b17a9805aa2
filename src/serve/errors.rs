//! Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with
//! the status an OpenAI client turns into the right exception.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::core::attempts::Ending;
use crate::core::failure::error_type;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's `type`.
    pub kind: &'static str,
    /// A stable code for scripts: llmroute's error type where there is one.
    pub code: &'static str,
    pub message: String,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            error_type::INVALID_INPUT,
            message,
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_token",
            "a valid token is needed: send Authorization: Bearer <token>",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "forbidden",
            message,
        )
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "not_found",
            message,
        )
    }

    pub fn too_large(cap: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "body_too_large",
            format!("the request body is larger than {cap} bytes"),
        )
    }

    /// A bug of llmroute's.
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            error_type::INTERNAL,
            crate::core::failure::INTERNAL_MESSAGE,
        )
    }

    /// Every upstream slot busy and the queue full.
    pub fn saturated() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "overloaded",
                "llmroute is saturated: every upstream slot is busy and the queue is full; retry later",
            )
        }
    }

    /// Too many requests of one kind at once (see `layers::Shed`).
    pub fn busy() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "overloaded",
                "llmroute is busy with requests of this kind; retry later",
            )
        }
    }

    /// The server is shutting down.
    pub fn shutting_down() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "shutting_down",
                "llmroute is shutting down",
            )
        }
    }

    pub fn deadline(after: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "deadline_exceeded",
            format!(
                "no answer within the deadline of {}",
                crate::core::duration::format(after)
            ),
        )
    }

    /// The error of a request that ended without an answer. A refused key
    /// is the server's problem, not the client's: 503 while it lasts.
    pub fn from_ending(e: &Ending, retry_refused: u64) -> ApiError {
        let (status, kind) = match e.kind {
            error_type::INVALID_INPUT | error_type::BAD_REQUEST | error_type::NO_ELIGIBLE_MODEL => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            error_type::BUDGET_EXCEEDED | error_type::KEY_BUDGET_EXCEEDED => {
                (StatusCode::TOO_MANY_REQUESTS, "insufficient_quota")
            }
            // The credit left does not cover this request on any model
            // cheap enough: this request's problem, not the server's.
            error_type::PAYMENT_REQUIRED => (StatusCode::PAYMENT_REQUIRED, "insufficient_quota"),
            error_type::AUTH => {
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    e.kind,
                    format!(
                        "the upstream API refused llmroute's key or account: {}",
                        e.message
                    ),
                );
                err.retry_after = Some(retry_refused);
                return err;
            }
            error_type::INTERNAL => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            // Every model left is rate limited upstream: a wait may help.
            error_type::RATE_LIMITED => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            _ => (StatusCode::BAD_GATEWAY, "upstream_error"),
        };
        ApiError {
            retry_after: e.retry_after.map(crate::core::duration::secs_up),
            ..ApiError::new(status, kind, e.kind, e.message.clone())
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": super::redact::clean(&self.message),
            "type": self.kind,
            "param": null,
            "code": self.code,
        }})
    }
}

impl ApiError {
    /// Whether a client's retry of the same request would only repeat what
    /// llmroute already did: it tried every candidate and fallback (502),
    /// ran out of time doing so (504), or the budget or the credit refused
    /// it (429 `budget_exceeded`, 402). The OpenAI SDKs read
    /// `x-should-retry: false` and do not retry.
    /// A 502 with a `Retry-After` (every model left paused a while) is
    /// not: a retry after the wait may be answered.
    fn final_answer(&self) -> bool {
        let paused = self.status == StatusCode::BAD_GATEWAY && self.retry_after.is_some();
        (matches!(
            self.status,
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT | StatusCode::PAYMENT_REQUIRED
        ) && !paused)
            || (self.status == StatusCode::TOO_MANY_REQUESTS
                && matches!(self.code, "budget_exceeded" | "key_budget_exceeded"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let final_answer = self.final_answer();
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if final_answer {
            resp.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_get_fitting_statuses() {
        let status = |kind| ApiError::from_ending(&Ending::new(kind, "m"), 30).status;
        assert_eq!(status(error_type::INVALID_INPUT), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(error_type::ALL_MODELS_FAILED),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            status(error_type::BUDGET_EXCEEDED),
            StatusCode::TOO_MANY_REQUESTS
        );
        let refused = ApiError::from_ending(&Ending::new(error_type::AUTH, "no"), 30);
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after, Some(30));
    }

    #[test]
    fn only_what_a_retry_would_repeat_says_not_to_retry() {
        let failed = |retry_after: Option<std::time::Duration>| {
            let e = Ending {
                retry_after,
                ..Ending::new(error_type::ALL_MODELS_FAILED, "m")
            };
            ApiError::from_ending(&e, 30).into_response()
        };
        let h = failed(None).headers().clone();
        assert_eq!(h["x-should-retry"], "false");
        // Every model left paused: the wait is said, and a retry after it
        // may be answered.
        let h = failed(Some(std::time::Duration::from_millis(9_200)))
            .headers()
            .clone();
        assert_eq!(h["retry-after"], "10");
        assert!(h.get("x-should-retry").is_none(), "{h:?}");
    }

    #[test]
    fn the_body_has_openais_shape() {
        let b = ApiError::bad_request("x").body();
        assert_eq!(b["error"]["message"], "x");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["code"], "invalid_input");
    }
}
