//! Which tools may be offered to the model: a static reading of the policy bundles.
//!
//! A tool is offered unless the bundles make every call of it a DENY for this principal,
//! whatever its arguments and history: no applicable bundle (`NO_POLICY_DEFINED`), a
//! bundle that does not name it and denies other tools, a bundle naming it only in DENY
//! rules, or an unconditional DENY rule. This is an over-approximation of what can be
//! allowed: every call the model proposes is still decided by the kernel.

use guardian::{glob_match, Bundle, OtherTools, Verdict};

/// Whether `principal` could ever be allowed (or escalated) a call of `tool`.
pub(crate) fn may_use(bundles: &[Bundle], principal: &str, tool: &str) -> bool {
    let mut possible = false;
    for b in bundles {
        let spec = b.spec();
        if !(spec.principals.is_empty() || spec.principals.iter().any(|p| glob_match(p, principal))) {
            continue;
        }
        let mut naming = spec
            .rules
            .iter()
            .filter(|r| r.tools.iter().any(|p| glob_match(p, tool)))
            .peekable();
        if naming.peek().is_none() {
            match spec.other_tools {
                OtherTools::Deny => return false,
                OtherTools::NotApplicable => continue,
            }
        }
        let mut can = false;
        for r in naming {
            let unconditional = r.require.iter().all(|e| e == "true");
            if r.verdict == Verdict::Deny && unconditional {
                return false;
            }
            if r.verdict != Verdict::Deny {
                can = true;
            }
        }
        if !can {
            // Covered, but only DENY rules: every call is denied.
            return false;
        }
        possible = true;
    }
    possible
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn offers_only_what_can_be_allowed() {
        let a = Bundle::from_toml(
            r#"
name = "a"
principals = ["agent-*"]
other_tools = "deny"
[[rule]]
id = "read"
tools = ["read_file"]
verdict = "allow"
require = ["args.path matches '/w/*'"]
[[rule]]
id = "deploy"
tools = ["deploy"]
verdict = "escalate"
require = ["true"]
[[rule]]
id = "rm"
tools = ["shell"]
verdict = "deny"
require = ["args.cmd == 'rm'"]
"#,
        )
        .unwrap();
        let bundles = [a];
        assert!(may_use(&bundles, "agent-7", "read_file"));
        assert!(may_use(&bundles, "agent-7", "deploy"));
        assert!(!may_use(&bundles, "agent-7", "shell"));
        assert!(!may_use(&bundles, "agent-7", "delete_everything"));
        // Not covered by any bundle: NO_POLICY_DEFINED.
        assert!(!may_use(&bundles, "someone-else", "read_file"));
        let b = Bundle::from_toml(
            r#"
name = "b"
[[rule]]
id = "never"
tools = ["read_*"]
verdict = "deny"
reason = "TOOL_NOT_ALLOWED"
require = ["true"]
"#,
        )
        .unwrap();
        let bundles = [bundles.into_iter().next().unwrap(), b];
        assert!(!may_use(&bundles, "agent-7", "read_file"));
        assert!(may_use(&bundles, "agent-7", "deploy"));
    }
}
