"""Fixtures: the official OpenAI client pointed at helm-proxy (the one-line base_url
change), the scripted upstream's record of what it received, and an approver that
signs approvals with the PUBLIC TEST approver key (never for real use).

Run by proxy/tests/openai_e2e.rs, which starts the upstream and the proxies and sets:
HELM_PROXY_URL (deny mode rewrite), HELM_PROXY_ERROR_URL (deny mode error),
HELM_UPSTREAM_URL, HELM_AGENT_TOKEN, HELM_APPROVER_TOKEN, HELM_STATE_DIR.
"""

import hashlib
import json
import os
import urllib.error
import urllib.request

import pytest
from openai import OpenAI

ENV = os.environ


def need(name):
    v = ENV.get(name)
    if not v:
        pytest.exit(f"{name} is not set: run these tests through `cargo test -p helm-proxy --test openai_e2e`", 2)
    return v


def make_client(url, session=None, token=None):
    headers = {"X-Helm-Session": session} if session else None
    return OpenAI(base_url=url + "/v1", api_key=token or need("HELM_AGENT_TOKEN"), max_retries=0, timeout=30,
                  default_headers=headers)


@pytest.fixture
def client():
    return make_client(need("HELM_PROXY_URL"))


@pytest.fixture
def err_client():
    return make_client(need("HELM_PROXY_ERROR_URL"))


@pytest.fixture
def direct():
    """The same upstream without the proxy."""
    return OpenAI(base_url=need("HELM_UPSTREAM_URL") + "/v1", api_key=ENV.get("HELM_TEST_UPSTREAM_KEY", "sk-upstream-test"), max_retries=0)


def http(method, url, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def upstream_last(model):
    """What the upstream last received for a scenario: {"body", "headers"}."""
    status, j = http("GET", need("HELM_UPSTREAM_URL") + "/__last/" + model)
    assert status == 200
    return j


def approve(proxy_url, approval_id):
    """Signs the approval's challenge with the PUBLIC TEST key approver-1 and submits it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    seed = hashlib.sha256(b"HELM PROXY TEST KEY - PUBLIC, NEVER USE FOR REAL - approver-1").digest()
    key = Ed25519PrivateKey.from_private_bytes(seed)
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    token = need("HELM_APPROVER_TOKEN")
    status, a = http("GET", f"{proxy_url}/v1/approvals/{approval_id}", token)
    assert status == 200, a
    sig = key.sign(bytes.fromhex(a["challenge"])).hex()
    status, r = http("POST", f"{proxy_url}/v1/approvals/{approval_id}", token, {"approver": "ed25519:" + pub, "signature": sig})
    assert status == 200, r
    assert r["state"] == "approved", r
    return r


def calls_header(raw):
    """The x-helm-call headers of a raw response, parsed."""
    out = []
    for v in raw.headers.get_list("x-helm-call") if hasattr(raw.headers, "get_list") else raw.headers.get_all("x-helm-call"):
        out.append(dict(part.strip().split("=", 1) for part in v.split(";")))
    return out


def state_path():
    return os.path.join(need("HELM_STATE_DIR"), "state.json")


def save_state(**kw):
    s = load_state()
    s.update(kw)
    with open(state_path(), "w") as f:
        json.dump(s, f)


def load_state():
    try:
        with open(state_path()) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
