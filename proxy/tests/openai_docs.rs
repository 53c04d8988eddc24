//! The README's OpenAI-compatible proxy section stays in step with the code: its
//! configuration example loads and passes the checks, and names every `[openai]` key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;

use helm_proxy::config::Config;
use helm_proxy::openai::OpenAiSection;

fn section() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("\n## OpenAI-compatible proxy")
        .expect("README has the section");
    readme[start..].to_owned()
}

#[test]
fn readme_configuration_example_loads() {
    let s = section();
    let block = s
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block");
    let mut c: Config = toml::from_str(block).unwrap();
    c.resolve(Path::new("/etc/helm"));
    c.check().unwrap();
    let o = c.openai.expect("[openai]");
    assert_eq!(
        o,
        OpenAiSection {
            api_key_env: Some("OPENAI_API_KEY".into()),
            ..OpenAiSection::default()
        }
    );
    // Every key is documented.
    let all = OpenAiSection {
        api_key_file: Some("/k".into()),
        ca_file: Some("/c".into()),
        ..o
    };
    let text = toml::to_string(&all).unwrap();
    for line in text.lines() {
        let key = line.split(" =").next().unwrap();
        assert!(
            s.contains(&format!("{key} =")) || s.contains(&format!("{key} = ")),
            "README does not document {key}"
        );
    }
    for mode in [
        "`rewrite`",
        "`error`",
        "x-should-retry",
        "x-helm-call",
        "X-Helm-Session",
    ] {
        assert!(s.contains(mode), "README does not mention {mode}");
    }
}
