import hashlib

import pytest

from helm_verify.cbor import Decoder, Map, Text, encode
from helm_verify.errors import DecodeError
from helm_verify.record import decode_record, sig_structure
from helm_verify.verifier import Verifier, approval_challenge, checkpoint_challenge
from helm_verify.errors import VerifyError
from tests.helpers import record_vectors

VECTORS = record_vectors()


def run(v):
    ver = Verifier([bytes.fromhex(a) for a in v["anchors"]])
    try:
        for r in v["records"]:
            ver.push(bytes.fromhex(r))
        count, root = ver.finish()
    except VerifyError as e:
        return {"result": "reject", "error": e.code, "index": e.index}
    return {"result": "accept", "count": count, "root": root.hex()}


@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
def test_record_vector(v):
    assert run(v) == v["expect"]


def test_pushing_after_an_error_repeats_it():
    v = next(v for v in VECTORS if v["id"] == "rule4/dropped-record")
    ver = Verifier([bytes.fromhex(a) for a in v["anchors"]])
    with pytest.raises(VerifyError) as first:
        for r in v["records"]:
            ver.push(bytes.fromhex(r))
    with pytest.raises(VerifyError) as again:
        ver.push(bytes.fromhex(v["records"][0]))
    assert (again.value.code, again.value.index) == (first.value.code, first.value.index)


FIRST = bytes.fromhex(next(v for v in VECTORS if v["id"] == "valid/allow-then-effect")["records"][0])


def test_worked_example_rf_11():
    assert len(FIRST) == 190
    assert hashlib.sha256(FIRST).hexdigest() == "fec92cb3ef57d0da3347628ec0ad245c61c058166de54361aa75e5761cdbc0b2"
    rec = decode_record(FIRST)
    assert len(rec.signed_message()) == 134
    assert rec.kind == 6 and rec.body["roles"] == [b"kernel"]


def test_challenges_rf_8():
    e = bytes.fromhex("3d988aaf4f209777a91adeb200d59d6b253da49df71d2b1d113d3dcdab0dc1ad")
    assert approval_challenge(e).hex() == "827048454c4d2d415050524f56414c2d763158203d988aaf4f209777a91adeb200d59d6b253da49df71d2b1d113d3dcdab0dc1ad"
    r = bytes.fromhex("b3bc155eece97ad5fb4ae96d773d1953aa333ffed837478505acc38972d21951")
    assert checkpoint_challenge(6, r).hex() == "837248454c4d2d434845434b504f494e542d7631065820" + r.hex()
    assert checkpoint_challenge(1000, b"\xab" * 32).hex().startswith("837248454c4d2d434845434b504f494e542d76311903e85820")


def with_payload(mutate) -> bytes:
    """FIRST with its payload changed (signature left as is: decoding comes first)."""
    rec = decode_record(FIRST)
    tree = Decoder(rec.payload).item(0)
    d = dict(tree)
    mutate(d)
    payload = encode(Map(d.items()))
    return b"\xd2\x84\x58\x26" + rec.protected + b"\xa0" + encode(payload) + b"\x58\x40" + rec.signature


def decode_code(raw: bytes) -> str:
    try:
        decode_record(raw)
    except DecodeError as e:
        return e.code
    return "ok"


def test_decoding_order_consequences_of_verification_4_2():
    def v2_and_key10(d):
        d[0] = 2
        d[10] = 0
    assert decode_code(with_payload(v2_and_key10)) == "SCHEMA_UNKNOWN_FIELD"

    def empty_principal_no_seq(d):
        d[5] = Text(b"")
        del d[7]
    assert decode_code(with_payload(empty_principal_no_seq)) == "SCHEMA_INVALID_VALUE"

    def unknown_kind_bad_body(d):
        d[1] = 10
        d[8] = 5
    assert decode_code(with_payload(unknown_kind_bad_body)) == "UNKNOWN_KIND"

    def negative_lamport(d):
        d[3] = -1
    assert decode_code(with_payload(negative_lamport)) == "SCHEMA_INVALID_VALUE"

    def no_body(d):
        del d[8]
    assert decode_code(with_payload(no_body)) == "SCHEMA_MISSING_FIELD"

    def ext_not_text(d):
        d[9] = Map([(1, 0)])
    assert decode_code(with_payload(ext_not_text)) == "SCHEMA_INVALID_VALUE"

    def too_many_parents(d):
        d[2] = [bytes([i]) * 32 for i in range(33)]
    assert decode_code(with_payload(too_many_parents)) == "SCHEMA_INVALID_VALUE"

    def long_session(d):
        d[6] = Text(b"s" * 257)
    assert decode_code(with_payload(long_session)) == "SCHEMA_INVALID_VALUE"


def test_trust_event_shapes():
    def body(b):
        def f(d):
            d[8] = Map(b)
        return f
    k = bytes(32)
    assert decode_code(with_payload(body([(0, 0), (1, k)]))) == "SCHEMA_INVALID_VALUE"  # PUBLISH without roles
    assert decode_code(with_payload(body([(0, 2), (1, k), (2, [Text(b"kernel")])]))) == "SCHEMA_INVALID_VALUE"
    assert decode_code(with_payload(body([(0, 0), (1, k), (2, [Text(b"Kernel")])]))) == "SCHEMA_INVALID_VALUE"
    # roles ordered by encoding: "b" before "aa"
    assert decode_code(with_payload(body([(0, 0), (1, k), (2, [Text(b"b"), Text(b"aa")])]))) == "ok"
    assert decode_code(with_payload(body([(0, 0), (1, k), (2, [Text(b"aa"), Text(b"b")])]))) == "SCHEMA_INVALID_VALUE"
    assert decode_code(with_payload(body([(0, 3), (1, k)]))) == "SCHEMA_INVALID_VALUE"
    assert decode_code(with_payload(body([(0, 2), (1, k), (5, 0)]))) == "SCHEMA_UNKNOWN_FIELD"


def test_envelope_and_header_steps():
    rec = decode_record(FIRST)
    payload = b"\x58\x4f" + rec.payload
    sig = b"\x58\x40" + rec.signature

    def env(prot: bytes, unprot=b"\xa0", pay=payload, s=sig, n=b"\x84", tag=b"\xd2"):
        return tag + n + prot + unprot + pay + s

    prot = b"\x58\x26" + rec.protected
    assert decode_code(env(prot)) == "ok"
    assert decode_code(env(prot, n=b"\x83")) == "COSE_STRUCTURE"
    assert decode_code(env(prot, s=b"\x58\x3f" + rec.signature[:63])) == "COSE_STRUCTURE"
    assert decode_code(env(prot, s=b"\x58\x40" + rec.signature[:10])) == "CBOR_MALFORMED"
    assert decode_code(env(prot, pay=b"\xf6")) == "COSE_STRUCTURE"  # detached payload
    assert decode_code(env(prot) + b"\x00") == "CBOR_TRAILING_BYTES"
    assert decode_code(b"\x00" * 65537) == "RECORD_TOO_LARGE"
    kid = rec.protected[6:]

    def header(h: bytes):
        return env(encode(h))
    assert decode_code(header(b"\xa1\x01\x27")) == "COSE_KID_MISSING"
    assert decode_code(header(b"\xa1\x04\x58\x20" + kid)) == "COSE_ALGORITHM"
    assert decode_code(header(b"\xa2\x01\x26\x04\x58\x20" + kid)) == "COSE_ALGORITHM"
    assert decode_code(header(b"\xa2\x01\x27\x04\x58\x1f" + kid[:31])) == "COSE_KID_MISSING"
    assert decode_code(header(b"\xa2\x01\x27\x05\x00")) == "SCHEMA_UNKNOWN_FIELD"
    assert decode_code(header(b"\xa2\x04\x58\x20" + kid + b"\x01\x27")) == "CBOR_NON_CANONICAL"
    assert decode_code(header(b"\xa2\x01\x61x\x04\x58\x20" + kid)) == "SCHEMA_INVALID_VALUE"
    assert decode_code(header(b"\xa2\x01\x1b" + b"\xff" * 8 + b"\x04\x58\x20" + kid)) == "CBOR_MALFORMED"
    assert decode_code(header(b"\xa2\x01\x27\x04\x58\x20" + kid + b"\x00")) == "CBOR_TRAILING_BYTES"
    assert decode_code(header(b"\x80")) == "SCHEMA_INVALID_VALUE"
    assert decode_code(header(b"")) == "CBOR_MALFORMED"


def test_sig_structure_head_sizes():
    assert sig_structure(b"p" * 38, b"x" * 10)[:14] == b"\x84\x6aSignature1\x58\x26"
    assert sig_structure(b"", b"x" * 300)[13:17] == b"\x40\x59\x01\x2c"
