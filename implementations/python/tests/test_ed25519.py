import hashlib
import random

import pytest

from helm_verify import ed25519
from tests.helpers import load_json

CASES = load_json("ed25519", "strict-verdicts.json")
SMALL_ORDER_14 = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
]


def test_all_cctv_cases():
    assert len(CASES) == 914
    accepted = 0
    for c in CASES:
        got = ed25519.verify(bytes.fromhex(c["key"]), c["msg"].encode(), bytes.fromhex(c["sig"]))
        assert ("accept" if got else "reject") == c["expect"], c["number"]
        accepted += got
    assert accepted == 43


def test_pure_python_agrees_with_openssl_path():
    # every accepted case and a sample of the rejected ones (pure Python is slow)
    rng = random.Random(7)
    sample = [c for c in CASES if c["expect"] == "accept"]
    sample += rng.sample([c for c in CASES if c["expect"] == "reject"], 60)
    for c in sample:
        a, m, s = bytes.fromhex(c["key"]), c["msg"].encode(), bytes.fromhex(c["sig"])
        assert ed25519.verify_pure(a, m, s) == (c["expect"] == "accept"), c["number"]


def test_small_order_points():
    canonical = SMALL_ORDER_14[:8]
    for h in canonical:
        P = ed25519.decode_point(bytes.fromhex(h))
        assert P is not None and ed25519.is_small_order(P)
        assert ed25519.encode_point(P).hex() == h
    for h in SMALL_ORDER_14[8:]:  # non-canonical: strict decoding refuses them
        assert ed25519.decode_point(bytes.fromhex(h)) is None
    for h in SMALL_ORDER_14:
        assert not ed25519.key_admissible(bytes.fromhex(h))


def test_admission_of_test_keys_and_mixed_order():
    keys = load_json("keys", "test-keys.json")
    for name, pub in keys.items():
        if name != "warning":
            assert ed25519.key_admissible(bytes.fromhex(pub)), name
            seed = hashlib.sha256(("HELM TEST KEY - PUBLIC, NEVER USE FOR REAL - " + name).encode()).digest()
            assert ed25519.public_key(seed).hex() == pub
    # a prime-order key plus a point of order 8: on the curve, not small order, not admissible
    A = ed25519.decode_point(bytes.fromhex(keys["kernel-1"]))
    T = ed25519.decode_point(bytes.fromhex(SMALL_ORDER_14[4]))
    mixed = ed25519.encode_point(ed25519._add(A, T))
    assert ed25519.decode_point(mixed) is not None
    assert not ed25519.is_small_order(ed25519.decode_point(mixed))
    assert not ed25519.key_admissible(mixed)


def test_lengths_and_s_bound():
    keys = load_json("keys", "test-keys.json")
    seed = hashlib.sha256(b"HELM TEST KEY - PUBLIC, NEVER USE FOR REAL - kernel-1").digest()
    pk = bytes.fromhex(keys["kernel-1"])
    sig = ed25519.sign(seed, b"m")
    assert ed25519.verify(pk, b"m", sig)
    assert not ed25519.verify(pk, b"m", sig[:63])
    assert not ed25519.verify(pk[:31], b"m", sig)
    s = int.from_bytes(sig[32:], "little") + ed25519.L  # S + L: same point, not canonical
    assert s < 2**256
    assert not ed25519.verify(pk, b"m", sig[:32] + s.to_bytes(32, "little"))
