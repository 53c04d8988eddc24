//! OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}`.
//!
//! Policy refusals are 403 with `x-should-retry: false` (the official clients would
//! otherwise retry some statuses); a policy decision is never a 5xx. An upstream that
//! cannot be reached, or answers what cannot be governed, is 502.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `x-should-retry`, read by the official OpenAI clients.
pub(crate) const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// An error answer in the OpenAI format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OaiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) kind: &'static str,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<String>,
    /// Sent as `x-should-retry: false` (policy refusals, malformed requests).
    pub(crate) no_retry: bool,
}

impl OaiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, code: &str, message: impl Into<String>) -> OaiError {
        OaiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: Some(code.to_owned()),
            no_retry: status.is_client_error(),
        }
    }

    /// 400 `invalid_request_error`.
    pub(crate) fn invalid(code: &str, message: impl Into<String>) -> OaiError {
        OaiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", code, message)
    }

    /// 400 naming the parameter at fault.
    pub(crate) fn invalid_param(param: &str, code: &str, message: impl Into<String>) -> OaiError {
        let mut e = OaiError::invalid(code, message);
        e.param = Some(param.to_owned());
        e
    }

    /// 403: a policy decision (type `helm_policy_error`).
    pub(crate) fn policy(code: &str, message: impl Into<String>) -> OaiError {
        OaiError::new(StatusCode::FORBIDDEN, "helm_policy_error", code, message)
    }

    /// 502: the upstream could not be reached or answered something that cannot be governed.
    pub(crate) fn upstream(code: &str, message: impl Into<String>) -> OaiError {
        OaiError::new(StatusCode::BAD_GATEWAY, "upstream_error", code, message)
    }

    /// 503: the kernel could not record (nothing was passed ungoverned).
    pub(crate) fn kernel(message: impl Into<String>) -> OaiError {
        let mut e = OaiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "helm_kernel_error",
            message,
        );
        e.no_retry = false;
        e
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl core::fmt::Display for OaiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code.as_deref().unwrap_or(self.kind),
            self.message
        )
    }
}

impl IntoResponse for OaiError {
    fn into_response(self) -> Response {
        let mut r = crate::api::json(self.status, &self.body());
        if self.no_retry {
            r.headers_mut().insert(SHOULD_RETRY, HeaderValue::from_static("false"));
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}
