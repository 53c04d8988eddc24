//! The documentation stays in step with the code: every route is in `openapi.yaml`, the
//! example configuration loads, and the README names every configuration section.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

const ROUTES: [&str; 8] = [
    "/v1/evaluate",
    "/v1/effects",
    "/v1/records",
    "/v1/records/{index}",
    "/v1/approvals",
    "/v1/approvals/{id}",
    "/healthz",
    "/metrics",
];

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn openapi_documents_every_route() {
    let api = read("src/api.rs");
    let doc = read("openapi.yaml");
    assert!(doc.starts_with("openapi: 3.1"));
    for r in ROUTES {
        assert!(api.contains(&format!(".route(\"{r}\"")), "{r} is not a route of api.rs");
        assert!(
            doc.contains(&format!("\n  {r}:\n")),
            "{r} is not documented in openapi.yaml"
        );
    }
}

#[test]
fn example_configuration_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/helm-proxy.toml");
    let c = helm_proxy::config::Config::load(&path).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8787");
    assert_eq!(c.tokens.len(), 3);
    let readme = read("README.md");
    for section in [
        "[server]",
        "[store]",
        "[signer]",
        "[trust]",
        "[policy]",
        "[checkpoint]",
        "[approvals]",
        "[[token]]",
    ] {
        assert!(readme.contains(section), "README.md does not document {section}");
    }
}
