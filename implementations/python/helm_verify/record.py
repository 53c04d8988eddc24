"""Record decoding: envelope, protected header, payload and bodies, in the exact
order of spec/verification.md §4. Every failure raises DecodeError(code)."""

import hashlib
from dataclasses import dataclass, field

from . import registries as R
from .cbor import (
    Decoder, Map, Text, MAX_DEPTH, is_array, is_bytes, is_map, is_text, is_uint, encode_head,
)
from .errors import DecodeError

MAX_RECORD = 65536

COSE = "COSE_STRUCTURE"
INVALID = "SCHEMA_INVALID_VALUE"
MISSING = "SCHEMA_MISSING_FIELD"
UNKNOWN = "SCHEMA_UNKNOWN_FIELD"


@dataclass
class Escalation:
    role: bytes
    quorum: int
    not_before: int
    expires: int


@dataclass
class Record:
    raw: bytes
    hash: bytes
    kid: bytes
    protected: bytes
    payload: bytes
    signature: bytes
    version: int
    kind: int
    parents: list
    lamport: int
    time: int
    principal: bytes
    session: bytes
    seq: int
    body: dict = field(default_factory=dict)
    ext: object = None

    def signed_message(self) -> bytes:
        return sig_structure(self.protected, self.payload)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """RF §4: ["Signature1", protected, h'', payload]."""
    return (
        b"\x84\x6aSignature1"
        + encode_head(2, len(protected)) + protected
        + b"\x40"
        + encode_head(2, len(payload)) + payload
    )


# ---------------------------------------------------------------- envelope

@dataclass
class Envelope:
    protected: bytes
    payload: bytes
    signature: bytes


def decode_envelope(raw: bytes, check_size: bool = True) -> Envelope:
    """Steps D0-D7 (verification.md §4.1)."""
    if check_size and len(raw) > MAX_RECORD:
        raise DecodeError("RECORD_TOO_LARGE")
    dec = Decoder(raw)

    def expect(major: int, arg: int | None = None) -> int:
        mt, a = dec.head()
        if mt != major:
            raise DecodeError(COSE)
        dec.typed(mt, a)
        if arg is not None and a != arg:
            raise DecodeError(COSE)
        return a

    expect(6, 18)  # D1
    expect(4, 4)  # D2
    protected = dec.take(expect(2))  # D3
    expect(5, 0)  # D4
    payload = dec.take(expect(2))  # D5
    signature = dec.take(expect(2))  # D6
    if len(signature) != 64:
        raise DecodeError(COSE)
    if not dec.at_end():  # D7
        raise DecodeError("CBOR_TRAILING_BYTES")
    return Envelope(protected, payload, signature)


def decode_protected(content: bytes) -> bytes:
    """Steps H1-H5; returns the kid."""
    dec = Decoder(content)
    mt, count = dec.head()  # H1 (empty content: CBOR_MALFORMED from head())
    if mt != 5:
        raise DecodeError(INVALID)
    dec.typed(mt, count)
    prev = None
    alg = None
    kid = None
    for _ in range(count):  # H2
        mt, label = dec.head()
        if mt != 0:
            raise DecodeError(INVALID)
        if prev is not None and label <= prev:
            raise DecodeError("CBOR_NON_CANONICAL")
        prev = label
        if label not in (1, 4):
            raise DecodeError(UNKNOWN)
        vmt, varg = dec.head()
        if label == 1:
            # an argument above 2^63-1 is malformed whatever the major type (the
            # value must be a 64-bit signed integer); then the type
            if varg > 2**63 - 1:
                raise DecodeError("CBOR_MALFORMED")
            if vmt == 0:
                alg = varg
            elif vmt == 1:
                alg = -1 - varg
            else:
                raise DecodeError(INVALID)
        else:
            if vmt != 2:
                raise DecodeError(INVALID)
            dec.typed(vmt, varg)
            kid = dec.take(varg)
    if not dec.at_end():  # H3
        raise DecodeError("CBOR_TRAILING_BYTES")
    if alg != -8:  # H4
        raise DecodeError("COSE_ALGORITHM")
    if kid is None or len(kid) != 32:  # H5
        raise DecodeError("COSE_KID_MISSING")
    return kid


def walk_payload(content: bytes, max_key: int) -> dict:
    """Steps P1-P3: returns {key: value} of a map with uint keys 0..max_key."""
    dec = Decoder(content)
    mt, count = dec.head()  # P1
    if mt != 5:
        raise DecodeError(INVALID)
    dec.typed(mt, count)
    out = {}
    prev = None
    for _ in range(count):  # P2
        mt, key = dec.head()
        if mt != 0:
            raise DecodeError(INVALID)
        if prev is not None and key <= prev:
            raise DecodeError("CBOR_NON_CANONICAL")
        prev = key
        if key > max_key:
            raise DecodeError(UNKNOWN)
        out[key] = dec.item(0)
    if not dec.at_end():  # P3
        raise DecodeError("CBOR_TRAILING_BYTES")
    return out


# ---------------------------------------------------------------- field helpers

def _uint(v):
    if not is_uint(v):
        raise DecodeError(INVALID)
    return v


def _req(m: dict, k):
    if k not in m:
        raise DecodeError(MISSING)
    return m[k]


def _bstr32(v):
    if not is_bytes(v) or len(v) != 32:
        raise DecodeError(INVALID)
    return v


def _name(v, lo=1, hi=256):
    if not is_text(v) or not (lo <= len(v) <= hi):
        raise DecodeError(INVALID)
    return bytes(v)


def _range(v, lo, hi):
    v = _uint(v)
    if not (lo <= v <= hi):
        raise DecodeError(INVALID)
    return v


def _body_map(v, bound) -> dict:
    """§4.3: the body is a map; keys uint and below the bound."""
    if not is_map(v):
        raise DecodeError(INVALID)
    out = {}
    for k, x in v:
        if not is_uint(k):
            raise DecodeError(INVALID)
        if k >= bound:
            raise DecodeError(UNKNOWN)
        out[k] = x
    return out


def _role(v) -> bytes:
    if not is_text(v):
        raise DecodeError(INVALID)
    if not R.valid_role(bytes(v)):
        raise DecodeError(INVALID)
    return bytes(v)


def _signature_list(v) -> list:
    """RF §6.10, checked entry by entry in the order of its table."""
    if not is_array(v) or not (1 <= len(v) <= 16):
        raise DecodeError(INVALID)
    out = []
    prev = None
    for entry in v:
        if not is_map(entry):
            raise DecodeError(INVALID)
        if len(entry) != 2:
            raise DecodeError(MISSING)
        (k0, v0), (k1, v1) = entry
        if not is_uint(k0):
            raise DecodeError(INVALID)
        if k0 != 0:
            raise DecodeError(MISSING)
        key = _bstr32(v0)
        if not is_uint(k1):
            raise DecodeError(INVALID)
        if k1 != 1:
            raise DecodeError(MISSING)
        if not is_bytes(v1) or len(v1) != 64:
            raise DecodeError(INVALID)
        if prev is not None and not key > prev:
            raise DecodeError(INVALID)
        prev = key
        out.append((key, v1))
    return out


# ---------------------------------------------------------------- bodies

def _intent(b):
    return {
        "tool": _name(_req(b, 0)),
        "call_kind": _range(_req(b, 1), 0, 2),
        "args": _bstr32(_req(b, 2)),
    }


def _decision(b):
    verdict = _range(_req(b, 0), 0, 2)
    reason = _req(b, 1)
    if not is_text(reason):
        raise DecodeError(INVALID)
    if bytes(reason) not in R.VERDICT_REASONS[verdict]:
        raise DecodeError("UNKNOWN_REASON_CODE")
    policy = _bstr32(_req(b, 2))
    out = {"verdict": verdict, "reason": bytes(reason), "policy": policy, "escalation": None}
    if verdict == R.ESCALATE:
        esc = _body_map(_req(b, 3), 4)
        role = _role(_req(esc, 0))
        quorum = _uint(_req(esc, 1))
        not_before = _uint(_req(esc, 2))
        expires = _uint(_req(esc, 3))
        if not (1 <= quorum <= 16):
            raise DecodeError(INVALID)
        if expires < not_before:
            raise DecodeError(INVALID)
        out["escalation"] = Escalation(role, quorum, not_before, expires)
    elif 3 in b:
        raise DecodeError(UNKNOWN)
    return out


def _approval(b):
    return {"approvals": _signature_list(_req(b, 0))}


def _effect(b):
    status = _range(_req(b, 0), 0, 2)
    meters = None
    if 6 in b:
        m = b[6]
        if not is_map(m) or not (1 <= len(m) <= 16):
            raise DecodeError(INVALID)
        meters = []
        for name, value in m:
            if not is_text(name) or not (1 <= len(name) <= 64):
                raise DecodeError(INVALID)
            meters.append((bytes(name), _uint(value)))
    return {
        "status": status,
        "meters": meters,
        "tool": _name(_req(b, 1)),
        "call_kind": _range(_req(b, 2), 0, 2),
        "args": _bstr32(_req(b, 3)),
        "output": _bstr32(_req(b, 4)),
        "executor": _name(_req(b, 5)),
    }


def _violation(b):
    code = _req(b, 0)
    if not is_text(code):
        raise DecodeError(INVALID)
    if bytes(code) not in R.VIOLATION_CODES:
        raise DecodeError("UNKNOWN_REASON_CODE")
    subject = _bstr32(b[1]) if 1 in b else None
    detail = None
    if 2 in b:
        detail = _name(b[2], 0, 1024)
    return {"code": bytes(code), "subject": subject, "detail": detail}


def _role_key(r: bytes):
    # "strictly ascending by encoding": the CBOR head carries the length
    return (len(r), r)


def _trust_event(b):
    action = _range(_req(b, 0), 0, 2)
    key = _bstr32(_req(b, 1))
    roles = None
    if 2 in b:
        arr = b[2]
        if not is_array(arr) or not (1 <= len(arr) <= 4):
            raise DecodeError(INVALID)
        roles = []
        prev = None
        for r in arr:
            name = _role(r)
            if prev is not None and not _role_key(name) > _role_key(prev):
                raise DecodeError(INVALID)
            prev = name
            roles.append(name)
    new_key = _bstr32(b[3]) if 3 in b else None
    cutoff = _bstr32(b[4]) if 4 in b else None
    if action == R.PUBLISH:
        ok = roles is not None and new_key is None and cutoff is None
    elif action == R.ROTATE:
        ok = roles is not None and new_key is not None
    else:
        ok = roles is None and new_key is None
    if not ok:
        raise DecodeError(INVALID)
    return {"action": action, "key": key, "roles": roles, "new_key": new_key, "cutoff": cutoff}


def _policy(b):
    bundle = _bstr32(_req(b, 0))
    name = _name(b[1]) if 1 in b else None
    return {"bundle": bundle, "name": name}


def _attestation(b):
    subtype = _req(b, 0)
    if not is_text(subtype):
        raise DecodeError(INVALID)
    if bytes(subtype) not in R.ATTESTATION_SUBTYPES:
        raise DecodeError("UNKNOWN_ATTESTATION_TYPE")
    subject = _bstr32(_req(b, 1))
    claims = None
    if 2 in b:
        if not is_map(b[2]):
            raise DecodeError(INVALID)
        claims = b[2]
    return {"subtype": bytes(subtype), "subject": subject, "claims": claims}


def _checkpoint(b):
    count = _uint(_req(b, 0))
    root = _bstr32(_req(b, 1))
    cos = _signature_list(b[2]) if 2 in b else []
    return {"count": count, "root": root, "cosignatures": cos}


BODY_DECODERS = {
    R.INTENT: _intent, R.DECISION: _decision, R.APPROVAL: _approval, R.EFFECT: _effect,
    R.VIOLATION: _violation, R.TRUST_EVENT: _trust_event, R.POLICY: _policy,
    R.ATTESTATION: _attestation, R.CHECKPOINT: _checkpoint,
}


# ---------------------------------------------------------------- record

def decode_record(raw: bytes) -> Record:
    """Decode one record (verification.md §4), raising DecodeError."""
    env = decode_envelope(raw)
    kid = decode_protected(env.protected)
    m = walk_payload(env.payload, 9)
    # F0
    version = _uint(_req(m, 0))
    if version != 1:
        raise DecodeError("UNSUPPORTED_VERSION")
    # F1
    kind = _uint(_req(m, 1))
    if not (1 <= kind <= 9):
        raise DecodeError("UNKNOWN_KIND")
    # F2
    parents = _req(m, 2)
    if not is_array(parents) or len(parents) > 32:
        raise DecodeError(INVALID)
    prev = None
    for h in parents:
        if not is_bytes(h) or len(h) != 32:
            raise DecodeError(INVALID)
        if prev is not None and not h > prev:
            raise DecodeError(INVALID)
        prev = h
    lamport = _uint(_req(m, 3))  # F3
    time = _uint(_req(m, 4))  # F4
    principal = _name(_req(m, 5))  # F5
    session = _name(_req(m, 6), 0, 256)  # F6
    seq = _uint(_req(m, 7))  # F7
    body_raw = _req(m, 8)  # F8
    body = BODY_DECODERS[kind](_body_map(body_raw, R.BODY_BOUND[kind]))
    ext = None
    if 9 in m:  # F9
        ext = m[9]
        if not is_map(ext):
            raise DecodeError(INVALID)
        for k, _ in ext:
            if not is_text(k):
                raise DecodeError(INVALID)
    return Record(
        raw=bytes(raw), hash=hashlib.sha256(raw).digest(), kid=kid,
        protected=env.protected, payload=env.payload, signature=env.signature,
        version=version, kind=kind, parents=list(parents), lamport=lamport, time=time,
        principal=principal, session=session, seq=seq, body=body, ext=ext,
    )
