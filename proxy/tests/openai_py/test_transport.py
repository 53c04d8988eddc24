"""Transport: TLS upstreams (rustls), body limits, clients that leave mid-stream."""

import json
import socket
import urllib.parse

import openai
import pytest

from conftest import ENV, calls_header, make_client, need

USER = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]


def test_tls_upstream_with_configured_ca():
    c = make_client(need("HELM_PROXY_TLS_URL"))
    raw = c.chat.completions.with_raw_response.create(model="read", messages=USER, tools=TOOLS)
    assert raw.parse().choices[0].message.tool_calls[0].function.name == "read_file"
    assert calls_header(raw)[0]["status"] == "allow"
    # Streams over TLS too.
    text = "".join(ch.choices[0].delta.content or "" for ch in
                   c.chat.completions.create(model="stream_plain", messages=USER, stream=True) if ch.choices)
    assert text == "Hello! How can I help?"


def test_untrusted_tls_upstream_is_a_502():
    c = make_client(need("HELM_PROXY_UNTRUSTED_URL"))
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="plain", messages=USER)
    assert e.value.status_code == 502 and e.value.code == "upstream_unreachable"
    assert "certificate" in e.value.message.lower()


def test_request_body_limit(client):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "x" * 300_000}])
    assert e.value.status_code == 413


def test_client_leaving_mid_stream():
    """A client that reads the first bytes of a governed stream and hangs up; the
    proxy keeps serving (the stores are verified at the end of the run)."""
    u = urllib.parse.urlsplit(need("HELM_PROXY_URL"))
    body = json.dumps({"model": "stream_deploy", "messages": USER, "tools": TOOLS, "stream": True}).encode()
    for _ in range(3):
        s = socket.create_connection((u.hostname, u.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + need("HELM_AGENT_TOKEN").encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert s.recv(64).startswith(b"HTTP/1.1 200")
        s.close()
    c = make_client(need("HELM_PROXY_URL"))
    assert c.chat.completions.create(model="plain", messages=USER).choices[0].message.content


def test_stream_comments_name_decisions_and_keep_alive():
    """Streams carry each call's decision as a `: helm-call` comment line (headers leave
    before the decisions) and `: keep-alive` comments while a decision waits."""
    import http.client

    u = urllib.parse.urlsplit(need("HELM_PROXY_URL"))
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    body = json.dumps({"model": "stream_deploy", "messages": USER, "tools": TOOLS, "stream": True})
    conn.request("POST", "/v1/chat/completions", body, {"Authorization": "Bearer " + need("HELM_AGENT_TOKEN"),
                                                        "Content-Type": "application/json", "X-Helm-Session": "comments"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("content-type").startswith("text/event-stream")
    assert r.getheader("x-helm-session") == "comments"
    text = r.read().decode()
    assert ": keep-alive\n" in text  # pending_wait_ms 300, keepalive_ms 100
    line = next(l for l in text.splitlines() if l.startswith(": helm-call "))
    assert "status=pending" in line and "reason=POLICY_ESCALATE" in line and "approval=" in line
    assert text.rstrip().endswith("data: [DONE]")
