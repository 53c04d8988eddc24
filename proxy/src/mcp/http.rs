//! Streamable HTTP and HTTP+SSE, client-facing (placeholder).
