#!/usr/bin/env python3
"""A minimal MCP server on stdio (newline-delimited JSON-RPC) with no dependency:
initialize, ping, tools/list and tools/call of one tool, `echo`. The HTTPS-upstream
test (tests/mtls.rs) puts it behind a TLS-serving helm-proxy, so that it runs wherever
python3 does, without the MCP SDK."""

from wire import answer, not_found, requests

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


for msg_id, method, params in requests():
    if method == "initialize":
        answer(msg_id, {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "tiny-stdio", "version": "1"},
        })
    elif method == "ping":
        answer(msg_id, {})
    elif method == "tools/list":
        answer(msg_id, {"tools": TOOLS})
    elif method == "tools/call" and params.get("name") == "echo":
        text = str((params.get("arguments") or {}).get("message", ""))
        answer(msg_id, {"content": [{"type": "text", "text": text}], "isError": False})
    else:
        not_found(msg_id, method)
