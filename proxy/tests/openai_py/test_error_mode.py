"""Deny mode `error`: a response with a call that is not allowed is refused."""

import openai
import pytest

USER = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "shell", "parameters": {"type": "object"}}}]


def test_denied_call_is_a_403(err_client):
    with pytest.raises(openai.PermissionDeniedError) as e:
        err_client.chat.completions.create(model="parallel", messages=USER, tools=TOOLS)
    assert e.value.code == "tool_call_denied"
    assert e.value.type == "helm_policy_error"
    assert "POLICY_DENY" in e.value.message
    assert e.value.response.headers["x-should-retry"] == "false"
    assert len(e.value.response.headers.get_list("x-helm-call")) == 3


def test_pending_is_a_403(err_client):
    with pytest.raises(openai.PermissionDeniedError) as e:
        err_client.chat.completions.create(model="deploy", messages=USER, tools=TOOLS)
    assert e.value.code == "tool_call_pending_approval"


def test_allowed_calls_pass(err_client):
    c = err_client.chat.completions.create(model="read", messages=USER, tools=TOOLS)
    assert c.choices[0].message.tool_calls[0].function.name == "read_file"


def test_stream_denial_is_an_error_event(err_client):
    with pytest.raises(openai.APIError) as e:
        for _ in err_client.chat.completions.create(model="stream_denied", messages=USER, tools=TOOLS, stream=True):
            pass
    assert "POLICY_DENY" in str(e.value)


def test_responses_stream_denial_is_an_error(err_client):
    with pytest.raises(openai.APIError):
        with err_client.responses.stream(model="r_stream_calls", input="hi") as s:
            for _ in s:
                pass
