"""Newline-delimited JSON-RPC on stdin/stdout for the dependency-free test servers
(tiny_stdio_server.py, server_silent_change.py, server_tasks_modern.py)."""

import json
import sys


def write(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def answer(msg_id, result=None, error=None):
    out = {"jsonrpc": "2.0", "id": msg_id}
    if error is not None:
        out["error"] = error
    else:
        out["result"] = result
    write(out)


def not_found(msg_id, method):
    answer(msg_id, error={"code": -32601, "message": "method not found: " + method})


def requests():
    """The requests read from stdin, as (id, method, params); notifications and answers
    need no reply and are skipped."""
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" in msg and "method" in msg:
            yield msg["id"], msg["method"], msg.get("params") or {}
