#!/usr/bin/env python3
"""An MCP server on stdio speaking revision 2026-07-28 with the Tasks extension
(`io.modelcontextprotocol/tasks`, specification/2026-07-28/tasks.md of
modelcontextprotocol/ext-tasks), written against the wire format with no dependency
(the SDKs here do not implement the extension's 2026-07-28 lifecycle). Every
`tools/call` returns a CreateTaskResult (`resultType: "task"`); the task then ends:

- `long`: `working` at the first `tasks/get`, `completed` with a result at the second;
- `crash`: `failed` with a JSON-RPC error at the first `tasks/get`;
- `slow`: `completed`, pushed at once as a `notifications/tasks` notification;
- `sleepy`: `working` until `tasks/cancel`, then `cancelled`;
- `ask`: `input_required` (an elicitation of a name, in `inputRequests`) until
  `tasks/update` brings the response, then `completed` with a greeting;
- `big`: `input_required` with an elicitation asking for a password (the test's
  policy refuses it);
- `wait`: `input_required` naming no request (as a 2025-11-25 task does, whose requests
  come on their own): nothing to decide, relayed as it is.

And one without a task: `confirm` answers an InputRequiredResult (multi round-trip
request: an elicitation in `inputRequests`) until it is retried with `inputResponses`.

Used by tests/mcp_e2e.rs (`modern_tasks_effect_at_terminal_status`)."""

from wire import answer, not_found, requests, write

VERSION = "2026-07-28"
TOOLS = [
    {"name": name, "description": what, "inputSchema": {"type": "object", "properties": {}}}
    for name, what in [
        ("long", "Completes on the second poll."),
        ("crash", "Fails with a JSON-RPC error."),
        ("slow", "Completes and pushes its status."),
        ("sleepy", "Works until cancelled."),
        ("ask", "Asks for a name."),
        ("big", "Asks for a password."),
        ("confirm", "Asks for confirmation, without a task."),
        ("wait", "Waits for input it does not name."),
    ]
]
STAMP = "2026-11-26T00:00:00Z"
tasks = {}  # taskId -> {"tool": name, "polls": n, "cancelled": bool, "input": {...}}


def elicit(message):
    return {"method": "elicitation/create", "params": {
        "mode": "form", "message": message,
        "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}}


def task(task_id, status, **extra):
    t = {"taskId": task_id, "status": status, "createdAt": STAMP, "lastUpdatedAt": STAMP,
         "ttlMs": 60000, "pollIntervalMs": 10}
    t.update(extra)
    return t


def state(task_id):
    """The task as `tasks/get` shows it now (each call is one poll)."""
    t = tasks[task_id]
    t["polls"] += 1
    if t["cancelled"]:
        return task(task_id, "cancelled", statusMessage="cancelled by the client")
    if t["tool"] == "long":
        if t["polls"] < 2:
            return task(task_id, "working", statusMessage="halfway")
        return task(task_id, "completed",
                    result={"content": [{"type": "text", "text": "long done 7"}], "isError": False})
    if t["tool"] == "crash":
        return task(task_id, "failed", statusMessage="rate limit",
                    error={"code": -32603, "message": "API rate limit exceeded"})
    if t["tool"] == "slow":
        return task(task_id, "completed",
                    result={"content": [{"type": "text", "text": "slow done"}], "isError": False})
    if t["tool"] == "ask":
        name = ((t["input"].get("name") or {}).get("content") or {}).get("name")
        if name is None:
            return task(task_id, "input_required", inputRequests={"name": elicit("Please enter your name.")})
        return task(task_id, "completed",
                    result={"content": [{"type": "text", "text": "Hello, " + name + "!"}], "isError": False})
    if t["tool"] == "wait":
        return task(task_id, "input_required")
    if t["tool"] == "big":
        return task(task_id, "input_required", inputRequests={"pw": elicit("Enter your password")})
    return task(task_id, "working")


for msg_id, method, params in requests():
    if method == "server/discover":
        answer(msg_id, {
            "resultType": "complete",
            "supportedVersions": [VERSION],
            "capabilities": {"tools": {}, "extensions": {"io.modelcontextprotocol/tasks": {}}},
            "serverInfo": {"name": "tasks-modern", "version": "1"},
        })
    elif method == "tools/list":
        answer(msg_id, {"resultType": "complete", "tools": TOOLS})
    elif method == "tools/call" and params.get("name") == "confirm":
        if "ok" in (params.get("inputResponses") or {}):
            answer(msg_id, {"resultType": "complete",
                               "content": [{"type": "text", "text": "confirmed"}], "isError": False})
        else:
            answer(msg_id, {"resultType": "input_required", "inputRequests": {"ok": elicit("Proceed?")}})
    elif method == "tools/call":
        name = params.get("name")
        task_id = "task-" + str(name)
        tasks[task_id] = {"tool": name, "polls": 0, "cancelled": False, "input": {}}
        answer(msg_id, dict(task(task_id, "working"), resultType="task"))
        if name == "slow":
            write({"jsonrpc": "2.0", "method": "notifications/tasks", "params": state(task_id)})
    elif method == "tasks/get":
        task_id = params.get("taskId")
        if task_id not in tasks:
            answer(msg_id, error={"code": -32602, "message": "Failed to retrieve task: Task not found"})
        else:
            answer(msg_id, dict(state(task_id), resultType="complete"))
    elif method == "tasks/update":
        task_id = params.get("taskId")
        if task_id in tasks:
            tasks[task_id]["input"].update(params.get("inputResponses") or {})
        answer(msg_id, {"resultType": "complete"})
    elif method == "tasks/cancel":
        task_id = params.get("taskId")
        if task_id in tasks:
            tasks[task_id]["cancelled"] = True
        answer(msg_id, {"resultType": "complete"})
    else:
        not_found(msg_id, method)
