"""The Responses API through helm-proxy (deny mode rewrite), with the official client."""

import json

import openai
import pytest

from conftest import calls_header, upstream_last

TOOLS = [
    {"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}},
    {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
    {"type": "custom", "name": "apply_patch"},
]


def kinds(resp):
    return [i.type for i in resp.output]


def test_calls_decided_denied_item_replaced(client):
    raw = client.responses.with_raw_response.create(model="r_calls", input="hi", tools=TOOLS)
    r = raw.parse()
    assert kinds(r) == ["message", "function_call", "message", "custom_tool_call"]
    assert r.output[1].name == "read_file"
    assert "was denied: POLICY_DENY" in r.output[2].content[0].text
    assert r.output[3].input.startswith("*** Begin Patch")
    hs = calls_header(raw)
    assert [h["status"] for h in hs] == ["allow", "deny", "allow"]
    # Results go back as function_call_output / custom_tool_call_output: recorded.
    inputs = [{"type": "function_call_output", "call_id": r.output[1].call_id, "output": "contents"},
              {"type": "custom_tool_call_output", "call_id": r.output[3].call_id, "output": "patched"}]
    r2 = client.responses.create(model="r_calls", input=inputs, tools=TOOLS)
    assert r2.output_text == "Done."


def test_stream_events_governed(client):
    with client.responses.stream(model="r_stream_calls", input="hi", tools=TOOLS) as s:
        events = list(s)
        final = s.get_final_response()
    assert kinds(final) == ["message", "function_call", "message", "custom_tool_call"]
    assert json.loads(final.output[1].arguments) == {"path": "/workspace/a.txt"}
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert deltas == '{"path": "/workspace/a.txt"}'  # the denied call's fragments never arrive
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_incomplete_call_denied(client):
    raw = client.responses.with_raw_response.create(model="r_incomplete", input="hi", tools=TOOLS)
    r = raw.parse()
    assert kinds(r) == ["message"]
    assert calls_header(raw)[0]["reason"] == "TRUNCATED_ARGUMENTS"


def test_hosted_tools_stripped_unless_listed_and_allowed(client):
    # web_search: listed in hosted_tools and allowed as hosted/web_search by the bundle;
    # code_interpreter: allowed by the bundle, not listed; file_search: listed, not
    # allowed; mcp: neither.
    tools = TOOLS + [{"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}},
                     {"type": "file_search", "vector_store_ids": ["vs_1"]},
                     {"type": "mcp", "server_label": "x", "server_url": "https://example.invalid/mcp", "require_approval": "never"}]
    r = client.responses.create(model="r_hosted", input="hi", tools=tools)
    assert json.loads(r.output[1].content[0].text) == ["function", "function", "custom", "web_search"]
    assert [t["type"] for t in upstream_last("r_hosted")["body"]["tools"]] == ["function", "function", "custom", "web_search"]


def test_builtin_client_tool_governed(client):
    raw = client.responses.with_raw_response.create(model="r_local_shell", input="hi")
    r = raw.parse()
    assert kinds(r) == ["message"]
    [h] = calls_header(raw)
    assert (h["status"], h["reason"]) == ("deny", "TOOL_NOT_ALLOWED")


def test_background_refused(client):
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="r_plain", input="hi", background=True)


def test_previous_response_id_gets_the_withheld_outputs(client):
    """The upstream keeps the original items of a stored response: continuing from it,
    the proxy supplies an output for each call the client never got."""
    r = client.responses.create(model="r_calls", input="hi", tools=TOOLS)
    denied = [i for i in r.output if i.type == "message" and "was denied" in i.content[0].text]
    assert len(denied) == 1
    read = r.output[1]
    r2 = client.responses.create(model="r_calls", previous_response_id=r.id, tools=TOOLS,
                                 input=[{"type": "function_call_output", "call_id": read.call_id, "output": "contents"}])
    assert r2.output_text == "Done."
    got = upstream_last("r_calls")["body"]["input"]
    outputs = {i["call_id"]: i for i in got if i.get("type", "").endswith("_call_output")}
    assert outputs[read.call_id]["output"] == "contents"
    helm = [i for i in outputs.values() if i["output"].startswith("[HELM]")]
    assert len(helm) == 1 and "POLICY_DENY" in helm[0]["output"]  # the denied shell call
    assert helm[0]["type"] == "function_call_output"
    # Streamed too; and with a plain text input, which becomes a user message after them.
    with client.responses.stream(model="r_stream_calls", input="hi", tools=TOOLS) as s:
        final = s.get_final_response()
    r3 = client.responses.create(model="r_stream_calls", previous_response_id=final.id, input="go on", tools=TOOLS)
    assert r3.output_text == "Done."
    got = upstream_last("r_stream_calls")["body"]["input"]
    assert [i.get("type", i.get("role")) for i in got] == ["function_call_output", "user"]
    assert got[0]["output"].startswith("[HELM]")
