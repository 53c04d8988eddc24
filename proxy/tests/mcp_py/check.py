"""An MCP client (the official Python SDK, 1.x or 2.x) against helm-proxy's MCP interceptor.

Exits 0 when every check of the scenario holds; prints one `ok: ...` line per check and a
final `N passed, 0 failed` line; on the first failure prints `FAIL: ...` and exits 1.

    python check.py --transport stdio --scenario full -- helm-proxy mcp --stdio ... -- python server.py
    python check.py --transport http --url http://127.0.0.1:PORT/mcp/t --token T --scenario full
    python check.py --transport sse --url http://127.0.0.1:PORT/mcp/t/sse --token T --scenario full

Scenarios:
  full        the small test server (server.py): allow, deny, escalate (and approve over HTTP),
              filtered list, progress, cancellation, sampling, resources, prompts
  changed     the same server after a definition change: echo is hidden and refused
  everything  @modelcontextprotocol/server-everything: echo, get-sum allowed, get-env refused
  filesystem  @modelcontextprotocol/server-filesystem: read inside, write outside refused
  modern      2026-07-28 (mcp 2.x client and server): server/discover, stateless calls
"""

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request

import mcp
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

VERSION = getattr(mcp, "__version__", None)
try:
    from importlib.metadata import version as _v

    VERSION = _v("mcp")
except Exception:  # pragma: no cover
    pass
V2 = VERSION is not None and int(VERSION.split(".")[0]) >= 2

PASSED = 0


def ok(what):
    global PASSED
    PASSED += 1
    print(f"ok: {what}", flush=True)


def check(cond, what, detail=""):
    if not cond:
        print(f"FAIL: {what} {detail}", flush=True)
        print(f"{PASSED} passed, 1 failed", flush=True)
        sys.exit(1)
    ok(what)


def err(result):
    """`isError` (1.x) or `is_error` (2.x)."""
    v = getattr(result, "is_error", None)
    return bool(v if v is not None else getattr(result, "isError", False))


def meta(result):
    m = getattr(result, "meta", None)
    if m is None:
        m = getattr(result, "_meta", None)
    return m or {}


def text_of(result):
    return " ".join(getattr(c, "text", "") for c in result.content)


def open_transport(args):
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    if args.transport == "stdio":
        return stdio_client(StdioServerParameters(command=args.command[0], args=args.command[1:], env=dict(os.environ)))
    if args.transport == "sse":
        from mcp.client.sse import sse_client

        return sse_client(args.url, headers=headers)
    if V2:
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        return streamable_http_client(args.url, http_client=create_mcp_http_client(headers=headers))
    from mcp.client.streamable_http import streamablehttp_client

    return streamablehttp_client(args.url, headers=headers)


async def sampling(context, params):
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="42"), model="test-model"
    )


async def elicitation(context, params):
    return types.ElicitResult(action="accept", content={"ok": True})


def approve(args, decision):
    """Signs the approval challenge with the PUBLIC test approver key and submits it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization

    seed = hashlib.sha256(b"HELM PROXY TEST KEY - PUBLIC, NEVER USE FOR REAL - approver-1").digest()
    key = Ed25519PrivateKey.from_private_bytes(seed)
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    approval = decision["approval"]
    sig = key.sign(bytes.fromhex(approval["challenge"])).hex()
    base = args.url.split("/mcp/")[0]
    req = urllib.request.Request(
        f"{base}/v1/approvals/{approval['id']}",
        data=json.dumps({"approver": f"ed25519:{pub}", "signature": sig}).encode(),
        headers={"Authorization": f"Bearer {args.approver_token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def scenario_full(s, args):
    tools = await s.list_tools()
    names = sorted(t.name for t in tools.tools)
    check(
        names == ["add", "ask", "big", "confirm", "crash", "deploy", "echo", "read_file", "sleepy", "slow"],
        "tools/list is filtered by policy (rm, which the policy always denies, is not listed)",
        str(names),
    )
    r = await s.call_tool("echo", {"message": "hi"})
    check(not err(r) and text_of(r) == "echo: hi", "an allowed call reaches the server", text_of(r))
    r = await s.call_tool("add", {"a": 2, "b": 3})
    check(not err(r) and "5" in text_of(r), "allowed call with integer arguments", text_of(r))
    r = await s.call_tool("read_file", {"path": "/workspace/a.txt"})
    check(not err(r), "read_file inside /workspace is allowed", text_of(r))
    if args.deny_as == "error":
        try:
            await s.call_tool("read_file", {"path": "/etc/passwd"})
            check(False, "a denied call is a JSON-RPC error")
        except Exception as e:
            check("POLICY_DENY" in str(e), "a denied call is a JSON-RPC error naming POLICY_DENY", str(e))
    else:
        r = await s.call_tool("read_file", {"path": "/etc/passwd"})
        check(err(r) and "POLICY_DENY" in text_of(r), "read_file outside /workspace is denied (isError, POLICY_DENY)", text_of(r))
        d = meta(r).get("helm/decision")
        check(d is not None and d["status"] == "deny" and d["decision"], "the denial carries the DECISION in _meta", str(d))
        r = await s.call_tool("rm", {"path": "/workspace/a"})
        check(err(r) and "POLICY_DENY" in text_of(r) and "no-rm" in text_of(r), "rm is denied by its rule even though unlisted", text_of(r))
        try:
            await s.call_tool("nonexistent", {})
            check(False, "an unknown tool is refused")
        except Exception as e:
            check("unknown tool" in str(e), "an unknown tool is a JSON-RPC error (-32602), never forwarded", str(e))
        # Escalation: pending, then approved over HTTP, then the same call is allowed.
        r = await s.call_tool("deploy", {"target": "prod"})
        check(err(r) and "approval" in text_of(r).lower(), "deploy is held for approval (approval pending)", text_of(r))
        decision = meta(r)["helm/decision"]
        check(decision["status"] == "pending" and decision["approval"]["id"], "pending answer carries the approval id", str(decision))
        if args.transport != "stdio" and args.approver_token:
            code, body = approve(args, decision)
            check(code == 200 and '"approved"' in body, "the approver signs the challenge over HTTP", body)
            r = await s.call_tool("deploy", {"target": "prod"})
            check(not err(r) and text_of(r) == "deployed prod", "the same call after the grant is allowed", text_of(r))
    # Progress passes faithfully.
    seen = []

    async def on_progress(progress, total, message):
        seen.append((progress, total))

    r = await s.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
    check(text_of(r) == "done 3", "a call with progress completes", text_of(r))
    check(len(seen) == 3 and seen[-1][0] == 3, "progress notifications pass", str(seen))
    # Cancellation passes: the call is abandoned, the session goes on.
    next_id = getattr(s, "_request_id", None)
    try:
        await asyncio.wait_for(s.call_tool("sleepy", {"seconds": 5}), timeout=0.5)
        check(False, "the sleepy call should have been cancelled")
    except (asyncio.TimeoutError, TimeoutError):
        if not V2 and next_id is not None:
            # mcp 1.x does not send notifications/cancelled when a call is abandoned: send it.
            await s.send_notification(
                types.ClientNotification(
                    types.CancelledNotification(
                        params=types.CancelledNotificationParams(requestId=next_id, reason="test")
                    )
                )
            )
        ok("a call cancelled by the client (notifications/cancelled)")
    r = await s.call_tool("echo", {"message": "after cancel"})
    check(text_of(r) == "echo: after cancel", "the session works after a cancellation", text_of(r))
    # Sampling: a server-to-client request passes (and is recorded).
    r = await s.call_tool("ask", {"question": "6x7?"})
    check(text_of(r) == "model said: 42", "sampling/createMessage passes to the client and back", text_of(r))
    r = await s.call_tool("confirm", {"action": "deploy"})
    check(text_of(r) == "confirmed deploy", "elicitation/create passes to the client and back", text_of(r))
    # Resources and prompts are governed too.
    res = await s.read_resource("note://x")
    check("note x" in res.contents[0].text, "resources/read allowed by policy")
    try:
        await s.read_resource("file:///etc/passwd")
        check(False, "resources/read outside policy is refused")
    except Exception as e:
        check("POLICY_DENY" in str(e) or "denied" in str(e), "resources/read outside policy is refused", str(e))
    p = await s.get_prompt("greet", {"name": "Ada"})
    check("Ada" in p.messages[0].content.text, "prompts/get allowed by policy")


async def scenario_changed(s, args):
    tools = await s.list_tools()
    names = sorted(t.name for t in tools.tools)
    check("echo" not in names and "add" in names, "a tool whose definition changed is not listed", str(names))
    if args.deny_as == "error":
        try:
            await s.call_tool("echo", {"message": "hi"})
            check(False, "the changed tool is refused")
        except Exception as e:
            check("TOOL_DEFINITION_CHANGED" in str(e), "the changed tool is refused (TOOL_DEFINITION_CHANGED)", str(e))
    else:
        r = await s.call_tool("echo", {"message": "hi"})
        check(err(r) and "TOOL_DEFINITION_CHANGED" in text_of(r), "the changed tool is refused (TOOL_DEFINITION_CHANGED)", text_of(r))
    r = await s.call_tool("add", {"a": 1, "b": 1})
    check(not err(r), "unchanged tools still work", text_of(r))
    if args.approver_token and args.deny_as != "error":
        # An approver looks at the new definition and approves it: the tool is back.
        r = await s.call_tool("echo", {"message": "hi"})
        d = meta(r)["helm/decision"]
        check(d["definition"] and d["pinned"] and d["definition"] != d["pinned"], "the refusal names both definitions", str(d))
        base = args.url.split("/mcp/")[0]
        req = urllib.request.Request(
            f"{base}/v1/mcp/pins",
            data=json.dumps({"server": "t", "tool": "echo", "sha256": d["definition"]}).encode(),
            headers={"Authorization": f"Bearer {args.approver_token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req) as resp:
            check(resp.status == 200, "the approver pins the new definition (POST /v1/mcp/pins)")
        r = await s.call_tool("echo", {"message": "hi", "extra": "!"})
        check(not err(r) and text_of(r) == "echo: hi!", "the approved new definition is callable", text_of(r))


async def scenario_everything(s, args):
    tools = await s.list_tools()
    names = sorted(t.name for t in tools.tools)
    check("echo" in names and "get-sum" in names and "get-env" not in names, "everything: list filtered (no get-env)", str(names))
    r = await s.call_tool("echo", {"message": "hello"})
    check(not err(r) and "hello" in text_of(r), "everything/echo allowed", text_of(r))
    r = await s.call_tool("get-sum", {"a": 2, "b": 40})
    check(not err(r) and "42" in text_of(r), "everything/get-sum allowed", text_of(r))
    r = await s.call_tool("get-env", {})
    check(err(r) and "TOOL_NOT_ALLOWED" in text_of(r), "everything/get-env refused (TOOL_NOT_ALLOWED)", text_of(r))
    check("PATH" not in text_of(r), "the environment did not leak")
    seen = []

    async def on_progress(progress, total, message):
        seen.append(progress)

    r = await s.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 2}, progress_callback=on_progress)
    check(not err(r) and len(seen) >= 2, "everything: progress of a long-running operation passes", f"{seen} {text_of(r)}")


async def scenario_filesystem(s, args):
    root = args.fs_root
    tools = await s.list_tools()
    names = sorted(t.name for t in tools.tools)
    check("read_text_file" in names and "write_file" in names and "move_file" not in names, "filesystem: list filtered", str(names))
    r = await s.call_tool("read_text_file", {"path": f"{root}/hello.txt"})
    check(not err(r) and "hello from the workspace" in text_of(r), "filesystem: read inside the root", text_of(r))
    r = await s.call_tool("write_file", {"path": f"{root}/out.txt", "content": "x"})
    check(not err(r), "filesystem: write inside the root", text_of(r))
    r = await s.call_tool("write_file", {"path": "/tmp/helm-outside.txt", "content": "x"})
    check(err(r) and "POLICY_DENY" in text_of(r), "filesystem: write outside the root refused", text_of(r))
    check(not os.path.exists("/tmp/helm-outside.txt"), "the file outside was not written")
    r = await s.call_tool("write_file", {"path": f"{root}/../escape.txt", "content": "x"})
    check(err(r), "filesystem: path traversal refused", text_of(r))


async def scenario_tasks(s, args):
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    tools = await s.list_tools()
    check([t.name for t in tools.tools] == ["long"], "tasks server: list")
    created = await s.experimental.call_tool_as_task("long", {"n": 7})
    task_id = created.task.taskId
    check(bool(task_id), "a task-augmented tools/call returns a task", str(created))
    result = await s.experimental.get_task_result(task_id, types.CallToolResult)
    check(text_of(result) == "long done 7", "tasks/result delivers the result", text_of(result))


async def run(args):
    async with open_transport(args) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write, sampling_callback=sampling, elicitation_callback=elicitation) as s:
            init = await s.initialize()
            pv = getattr(init, "protocolVersion", None) or getattr(init, "protocol_version", None)
            check(pv in ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"), f"initialize negotiated {pv} (mcp {VERSION})")
            if args.scenario == "full":
                await scenario_full(s, args)
            elif args.scenario == "changed":
                await scenario_changed(s, args)
            elif args.scenario == "everything":
                await scenario_everything(s, args)
            elif args.scenario == "filesystem":
                await scenario_filesystem(s, args)
            elif args.scenario == "tasks":
                await scenario_tasks(s, args)
    if args.transport == "stdio":
        ok("the client closed the proxy's stdin: clean shutdown")


async def run_modern(args):
    """2026-07-28 through the mcp 2.x `Client` pinned to the modern revision: no
    initialize, per-request _meta (and on HTTP the Mcp-Method / Mcp-Name headers)."""
    from mcp import Client

    if args.transport == "stdio":
        target = StdioServerParameters(command=args.command[0], args=args.command[1:], env=dict(os.environ))
    else:
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        target = streamable_http_client(
            args.url, http_client=create_mcp_http_client(headers={"Authorization": f"Bearer {args.token}"})
        )
    async with Client(target, mode="2026-07-28", cache=None) as c:
        ok(f"connected statelessly at 2026-07-28 (mcp {VERSION})")
        tools = await c.list_tools()
        names = sorted(t.name for t in tools.tools)
        check(names == ["add", "echo", "query", "read_file"], "2026-07-28 tools/list filtered by policy", str(names))
        r = await c.call_tool("query", {"region": "Zürich", "q": "rain?"})
        check(not err(r) and text_of(r) == "Zürich: rain?", "2026-07-28 x-mcp-header parameter (Mcp-Param-Region) passes", text_of(r))
        r = await c.call_tool("echo", {"message": "modern"})
        check(not err(r) and text_of(r) == "echo: modern", "2026-07-28 allowed call", text_of(r))
        r = await c.call_tool("read_file", {"path": "/etc/shadow"})
        check(err(r) and "POLICY_DENY" in text_of(r), "2026-07-28 denied call (isError)", text_of(r))
        rt = getattr(r, "result_type", None) or getattr(r, "resultType", None)
        check(rt in (None, "complete"), "the denial is a complete result", str(rt))
        r = await c.call_tool("rm", {"path": "/workspace/x"})
        check(err(r) and "POLICY_DENY" in text_of(r), "2026-07-28 rm refused", text_of(r))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", choices=["stdio", "http", "sse"], required=True)
    ap.add_argument("--scenario", default="full")
    ap.add_argument("--url")
    ap.add_argument("--token")
    ap.add_argument("--approver-token")
    ap.add_argument("--deny-as", default="result")
    ap.add_argument("--fs-root")
    ap.add_argument("command", nargs="*")
    args = ap.parse_args()
    t0 = time.time()
    asyncio.run(run_modern(args) if args.scenario == "modern" else run(args))
    print(f"{PASSED} passed, 0 failed ({time.time() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
