"""Trust-root files (spec/evidencepack.md §8)."""

import json
import re

from . import ed25519

_KEY = re.compile(r"\Aed25519:([0-9a-f]{64})\Z")


class TrustRootError(Exception):
    pass


def parse_trust_root(text: str) -> list[bytes]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise TrustRootError("not JSON: %s" % e)
    if not isinstance(doc, dict) or set(doc) != {"format", "anchors"}:
        raise TrustRootError("members must be exactly format and anchors")
    if doc["format"] != "helm-trust-root/1":
        raise TrustRootError("format is not helm-trust-root/1")
    anchors = doc["anchors"]
    if not isinstance(anchors, list) or not anchors:
        raise TrustRootError("anchors must be a non-empty array")
    out = []
    for a in anchors:
        if not isinstance(a, dict) or set(a) != {"name", "key"}:
            raise TrustRootError("an anchor has exactly the members name and key")
        if not isinstance(a["name"], str) or not isinstance(a["key"], str):
            raise TrustRootError("name and key are strings")
        m = _KEY.match(a["key"])
        if not m:
            raise TrustRootError("key is not ed25519:<64 lowercase hex>")
        key = bytes.fromhex(m.group(1))
        if not ed25519.key_admissible(key):
            raise TrustRootError("anchor %s is not an admissible key" % a["name"])
        out.append(key)
    return out


def make_trust_root(anchors: list[bytes]) -> str:
    return json.dumps({
        "format": "helm-trust-root/1",
        "anchors": [{"name": "anchor-%d" % i, "key": "ed25519:" + a.hex()} for i, a in enumerate(anchors)],
    }, indent=2) + "\n"
