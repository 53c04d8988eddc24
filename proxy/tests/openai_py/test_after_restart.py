"""After helm-proxy restarts on the same store: the call ids it saw are still known."""

import openai
import pytest

from conftest import load_state

pytestmark = pytest.mark.after_restart

TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]


def test_resent_result_accepted_after_restart(client):
    s = load_state()
    # The conversation with a result recorded before the restart: not a violation.
    c = client.chat.completions.create(model="read", messages=s["completed_messages"], tools=TOOLS)
    assert c.choices[0].message.content == "Done."


def test_result_of_a_call_denied_before_restart_refused(client):
    s = load_state()
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": s["denied_call"], "type": "function", "function": {"name": "shell", "arguments": '{"cmd": "rm"}'}}]},
            {"role": "tool", "tool_call_id": s["denied_call"], "content": "deleted"}]
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="plain", messages=msgs, tools=TOOLS)
    assert e.value.code == "tool_result_without_permit"
    assert "denied" in e.value.message
