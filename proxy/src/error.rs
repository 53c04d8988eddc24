//! The API's error answers: `{"error": {"code": "...", "message": "..."}}` with an HTTP
//! status that fits the code. Every route answers errors in this one form, including
//! unknown routes, wrong methods and oversized bodies.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use helm_kernel::Refusal;
use serde::Serialize;

/// An error with its sources, `outer: inner: …` (hyper's errors name only their kind,
/// e.g. "client error (Connect)"; the cause, such as an untrusted certificate, is in
/// the sources).
pub fn describe(e: &(dyn core::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = core::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code for programs (`UNAUTHENTICATED`, `INVALID_REQUEST`, ...).
    pub code: String,
    /// For people.
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// 401: no token, or one that is not configured.
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    /// 403: the token's principal may not use this endpoint.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 400 `INVALID_REQUEST`: the request is well-formed JSON but not what the endpoint takes.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 500 `INTERNAL`: the server failed (the kernel's worker stopped).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }

    /// A body that does not parse as the endpoint's JSON: 400 `INVALID_JSON` for a syntax
    /// error, 400 `INVALID_REQUEST` for JSON of the wrong shape.
    pub fn from_json(e: &serde_json::Error) -> ApiError {
        match e.classify() {
            serde_json::error::Category::Data => ApiError::invalid(e.to_string()),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_JSON",
                format!("the body is not JSON: {e}"),
            ),
        }
    }

    /// The kernel refused an effect or an approval: the kernel's code, with a status
    /// that fits it.
    pub fn from_refusal(r: Refusal) -> ApiError {
        let status = match r.code.as_str() {
            "UNKNOWN_APPROVAL" => StatusCode::NOT_FOUND,
            "NOT_YOUR_INTENT" | "APPROVAL_ROLE" | "APPROVAL_INVALID" => StatusCode::FORBIDDEN,
            "NO_OPEN_PERMIT" | "NO_PERMIT" | "APPROVAL_TIMELOCK" | "APPROVAL_EXPIRED" | "APPROVAL_DUPLICATE"
            | "ALREADY_RESOLVED" => StatusCode::CONFLICT,
            "KERNEL_ERROR" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError {
            status,
            code: r.code,
            message: r.message,
        }
    }
}

impl core::fmt::Display for ApiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl core::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: &self.code,
                message: &self.message,
            },
        };
        let mut resp = crate::api::json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"helm\""),
            );
        }
        resp
    }
}
