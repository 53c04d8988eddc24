//! A proposed tool call, as Guardian sees it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One proposed tool call: what the expression language can read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The tool's name; MCP tools are server-qualified: `server/tool`.
    pub tool: String,
    /// The arguments (JSON; usually an object).
    #[serde(default = "empty_object")]
    pub args: Value,
    /// Who proposes the call.
    pub principal: String,
    /// The session it belongs to.
    #[serde(default)]
    pub session: String,
    /// Anything else the kernel knows about the call (JSON object).
    #[serde(default = "empty_object")]
    pub context: Value,
    /// Kernel time of the proposal (the INTENT's time), ms since the Unix epoch.
    #[serde(default)]
    pub time: u64,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl Request {
    /// A request with empty arguments and context.
    pub fn new(tool: &str, principal: &str, session: &str, time: u64) -> Request {
        Request {
            tool: tool.to_owned(),
            args: empty_object(),
            principal: principal.to_owned(),
            session: session.to_owned(),
            context: empty_object(),
            time,
        }
    }

    /// The same request with `args`.
    pub fn with_args(mut self, args: Value) -> Request {
        self.args = args;
        self
    }
}
