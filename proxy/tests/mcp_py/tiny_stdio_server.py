#!/usr/bin/env python3
"""A minimal MCP server on stdio (newline-delimited JSON-RPC) with no dependency:
initialize, ping, tools/list and tools/call of one tool, `echo`. The HTTPS-upstream
test (tests/mtls.rs) puts it behind a TLS-serving helm-proxy, so that it runs wherever
python3 does, without the MCP SDK."""

import json
import sys

TOOLS = [
    {
        "name": "echo",
        "description": "Returns its message.",
        "inputSchema": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "required": ["message"],
        },
    }
]


def answer(msg_id, result=None, error=None):
    out = {"jsonrpc": "2.0", "id": msg_id}
    if error is not None:
        out["error"] = error
    else:
        out["result"] = result
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg or "method" not in msg:
        continue  # notifications and answers need no reply
    method = msg["method"]
    params = msg.get("params") or {}
    if method == "initialize":
        answer(msg["id"], {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "tiny-stdio", "version": "1"},
        })
    elif method == "ping":
        answer(msg["id"], {})
    elif method == "tools/list":
        answer(msg["id"], {"tools": TOOLS})
    elif method == "tools/call" and params.get("name") == "echo":
        text = str((params.get("arguments") or {}).get("message", ""))
        answer(msg["id"], {"content": [{"type": "text", "text": text}], "isError": False})
    else:
        answer(msg["id"], error={"code": -32601, "message": "method not found: " + method})
