//! `helm-proxy`: the HELM kernel server.
//!
//! An HTTP JSON API over [`helm_kernel::Kernel`]: agents propose tool calls and report
//! their effects, approvers answer escalations with Ed25519 signatures, auditors read
//! the signed records. Every decision is durable, signed records before it is answered.
//!
//! - [`config`]: the TOML configuration and the files it names.
//! - [`auth`]: API tokens (only their SHA-256 in the configuration) mapped to principals;
//!   the [`auth::Authenticated`] extractor.
//! - [`api`]: the routes ([`api::router`]), composable with later ones.
//! - [`openai`]: the governed OpenAI-compatible proxy (`[openai]`), routes beside the
//!   kernel's.
//! - [`server`]: listening, housekeeping ticks, graceful shutdown with a final checkpoint.
//! - [`tls`]: HTTPS (`[server] tls_cert`) and client certificates pinned to principals.
//!
//! The API is described in `proxy/openapi.yaml`; configuration and walkthrough in
//! `proxy/README.md`.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
mod log;
pub mod mcp;
pub mod openai;
mod prom;
pub mod server;
pub mod tls;
