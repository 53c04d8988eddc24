//! Authentication: API tokens mapped to principals.
//!
//! The configuration holds only the SHA-256 of each token (`token_sha256`). A request
//! carries `Authorization: Bearer <token>`; the server hashes the token and compares the
//! digest with every configured digest in constant time (no early exit, every entry
//! compared). The principal comes from the matching entry, never from a header or body.
//!
//! Over TLS with `[server] client_ca`, a client certificate pinned by a `[[client_cert]]`
//! authenticates its principal too (see [`crate::tls`]): the identity comes from the
//! connection, never from a header. A verified certificate that is not pinned gets 401
//! on every authenticated endpoint. A request with both a pinned certificate and a
//! bearer token is admitted only if both name the same principal, and may then do only
//! what both may do (the intersection of their scopes).
//!
//! [`Authenticated`] is an axum extractor: a handler that takes it is reachable only with
//! a valid token or certificate, and a request without one gets 401 and a JSON error
//! before the handler runs (and before its body is read). Routes added later (the OpenAI
//! proxy, the MCP interceptor) take the same extractor.

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::tls::{ClientCert, Peer};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Propose tool calls and report their effects (`/v1/evaluate`, `/v1/effects`).
    Agent,
    /// List, read and answer approvals (`/v1/approvals...`). The approval itself is
    /// authenticated by the approver's Ed25519 signature; the token only gates access.
    Approver,
    /// Read records and metrics (`/v1/records...`, `/metrics`).
    Auditor,
}

impl Scope {
    /// The scope's name in configurations and errors.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Agent => "agent",
            Scope::Approver => "approver",
            Scope::Auditor => "auditor",
        }
    }
}

/// One configured token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    /// The principal the token authenticates.
    pub principal: String,
    /// SHA-256 of the token.
    pub digest: [u8; 32],
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// The configured tokens.
#[derive(Clone, Debug, Default)]
pub struct TokenTable {
    entries: Vec<TokenEntry>,
}

impl TokenTable {
    /// A table of entries (digests must be distinct; the configuration checks that).
    pub fn new(entries: Vec<TokenEntry>) -> TokenTable {
        TokenTable { entries }
    }

    /// The entries.
    pub fn entries(&self) -> &[TokenEntry] {
        &self.entries
    }

    /// The entry whose digest is SHA-256 of `token`, if any. Compares with every entry,
    /// each in constant time.
    pub fn authenticate(&self, token: &[u8]) -> Option<&TokenEntry> {
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&digest)) {
                found = Some(e);
            }
        }
        found
    }
}

/// SHA-256 of a token, as the configuration writes it (64 lowercase hex digits).
pub fn token_digest_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: `helm_` and 43 base64url characters (32 random bytes).
pub fn new_token() -> Result<String, String> {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("random source failed: {e}"))?;
    Ok(format!(
        "helm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    ))
}

/// A request's authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The principal of the token.
    pub principal: String,
    /// The token's scopes.
    pub scopes: Vec<Scope>,
}

impl Authenticated {
    /// 403 unless the caller's token (or certificate) has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the token of principal {:?} does not have the scope {:?} this endpoint needs",
                self.principal,
                scope.name()
            )))
        }
    }
}

/// The bearer token of a request: exactly one `Authorization` header, scheme `Bearer`
/// (any case), one space, a non-empty token of visible ASCII.
fn bearer(parts: &Parts) -> Result<&[u8], ApiError> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::unauthenticated(
            "send exactly one header \"Authorization: Bearer <token>\"",
        ));
    };
    let bytes = value.as_bytes();
    let token = bytes
        .split_at_checked(7)
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
        .map(|(_, token)| token)
        .filter(|t| !t.is_empty() && t.iter().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| ApiError::unauthenticated("the Authorization header must be \"Bearer <token>\""))?;
    Ok(token)
}

impl<S> FromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Arc<TokenTable>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let table = Arc::<TokenTable>::from_ref(state);
        // The connection's client certificate (set by the TLS listener, never by the client).
        let cert = match parts.extensions.get::<ConnectInfo<Peer>>().map(|c| &c.0.cert) {
            None | Some(ClientCert::None) => None,
            Some(ClientCert::Unpinned(fp)) => {
                return Err(ApiError::unauthenticated(format!(
                    "the client certificate (SHA-256 {}) is not configured as a [[client_cert]]",
                    hex::encode(fp)
                )))
            }
            Some(ClientCert::Pinned(id)) => Some(id.clone()),
        };
        if let Some(id) = &cert {
            if !parts.headers.contains_key(AUTHORIZATION) {
                return Ok(Authenticated {
                    principal: id.principal.clone(),
                    scopes: id.scopes.clone(),
                });
            }
        }
        let token = bearer(parts)?;
        let entry = table
            .authenticate(token)
            .ok_or_else(|| ApiError::unauthenticated("the token is not valid"))?;
        let Some(id) = cert else {
            return Ok(Authenticated {
                principal: entry.principal.clone(),
                scopes: entry.scopes.clone(),
            });
        };
        if id.principal != entry.principal {
            return Err(ApiError::unauthenticated(
                "the client certificate and the bearer token authenticate different principals",
            ));
        }
        Ok(Authenticated {
            principal: entry.principal.clone(),
            scopes: entry.scopes.iter().copied().filter(|s| id.scopes.contains(s)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn table() -> TokenTable {
        TokenTable::new(vec![
            TokenEntry {
                principal: "alice".into(),
                digest: Sha256::digest(b"token-a").into(),
                scopes: vec![Scope::Agent],
            },
            TokenEntry {
                principal: "bob".into(),
                digest: Sha256::digest(b"token-b").into(),
                scopes: vec![Scope::Approver],
            },
        ])
    }

    fn parts(values: &[&str]) -> Parts {
        let mut b = axum::http::Request::builder();
        for v in values {
            b = b.header(AUTHORIZATION, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn tokens_map_to_principals() {
        let t = table();
        assert_eq!(t.authenticate(b"token-a").unwrap().principal, "alice");
        assert_eq!(t.authenticate(b"token-b").unwrap().principal, "bob");
        assert!(t.authenticate(b"token-c").is_none());
        assert!(t.authenticate(b"").is_none());
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer(&parts(&["Bearer abc"])).unwrap(), b"abc");
        assert_eq!(bearer(&parts(&["bearer abc"])).unwrap(), b"abc");
        for bad in [
            &["Basic abc"][..],
            &["Bearer "],
            &["Bearer  abc"],
            &["Bearerabc"],
            &["Bearer a b"],
            &[],
            &["Bearer a", "Bearer b"],
        ] {
            let e = bearer(&parts(bad)).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED, "{bad:?}");
        }
    }

    #[test]
    fn new_tokens_differ_and_hash() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("helm_") && a.len() == 48);
        assert_eq!(token_digest_hex("token-a"), hex::encode(Sha256::digest(b"token-a")));
    }
}
