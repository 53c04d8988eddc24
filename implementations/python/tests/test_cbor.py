import pytest

from helm_verify import cbor
from helm_verify.cbor import Decoder, Map, Text, decode_single, encode
from helm_verify.errors import DecodeError


def code(data: bytes) -> str:
    try:
        decode_single(data)
    except DecodeError as e:
        return e.code
    return "ok"


@pytest.mark.parametrize("data,expected", [
    (b"\x17", "ok"),
    (b"\x18\x18", "ok"),
    (b"\x18\x17", "CBOR_NON_CANONICAL"),          # not shortest
    (b"\x19\x00\xff", "CBOR_NON_CANONICAL"),
    (b"\x1a\x00\x00\xff\xff", "CBOR_NON_CANONICAL"),
    (b"\x1b\x00\x00\x00\x00\xff\xff\xff\xff", "CBOR_NON_CANONICAL"),
    (b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff", "ok"),  # 2^64-1
    (b"\x3b\xff\xff\xff\xff\xff\xff\xff\xff", "ok"),  # -2^64
    (b"\x18", "CBOR_MALFORMED"),                  # head cut short
    (b"\x1c", "CBOR_MALFORMED"),                  # reserved 28-30
    (b"\x5d", "CBOR_MALFORMED"),
    (b"\x5f", "CBOR_NON_CANONICAL"),              # indefinite
    (b"\x9f", "CBOR_NON_CANONICAL"),
    (b"\x1f", "CBOR_NON_CANONICAL"),              # ai 31 on mt 0
    (b"\xf8\x20", "CBOR_NON_CANONICAL"),          # one-byte simple
    (b"\xf9\x00\x00", "CBOR_NON_CANONICAL"),      # half float
    (b"\xfc", "CBOR_NON_CANONICAL"),              # mt 7 row before reserved
    (b"\xff", "CBOR_NON_CANONICAL"),              # break
    (b"\xf7", "CBOR_NON_CANONICAL"),              # undefined
    (b"\xe0", "CBOR_NON_CANONICAL"),              # simple 0
    (b"\xf3", "CBOR_NON_CANONICAL"),              # simple 19
    (b"\xf4", "ok"), (b"\xf5", "ok"), (b"\xf6", "ok"),
    (b"\xd2\x00", "CBOR_NON_CANONICAL"),          # tag inside a payload value
    (b"\x62\xff\xfe", "CBOR_MALFORMED"),          # not UTF-8
    (b"\x63\xed\xa0\x80", "CBOR_MALFORMED"),      # surrogate
    (b"\x62\xc0\x80", "CBOR_MALFORMED"),          # overlong
    (b"\x44\x01\x02", "CBOR_MALFORMED"),          # length beyond input
    (b"\x9a\xff\xff\xff\xff", "CBOR_MALFORMED"),  # count beyond input
    (b"\x00\x00", "CBOR_TRAILING_BYTES"),
    (b"\xa2\x01\x00\x00\x00", "CBOR_NON_CANONICAL"),  # keys out of order
    (b"\xa2\x00\x00\x00\x00", "CBOR_NON_CANONICAL"),  # duplicate key
    (b"\xa2\x61b\x00\x62aa\x00", "ok"),               # "b" < "aa": shorter first
    (b"\xa2\x62aa\x00\x61b\x00", "CBOR_NON_CANONICAL"),
])
def test_profile(data, expected):
    assert code(data) == expected


def nested(n: int, inner: bytes = b"\x00") -> bytes:
    return b"\x81" * n + inner


def test_depth_examples_of_rf_2_6():
    # as the extension map (value of a payload key: depth 0): {"x": 7 arrays} accepted
    ext7 = b"\xa1\x61x" + nested(7)
    ext8 = b"\xa1\x61x" + nested(8)
    assert Decoder(ext7).item(0) is not None
    with pytest.raises(DecodeError) as e:
        Decoder(ext8).item(0)
    assert e.value.code == "CBOR_MALFORMED"
    # claims are at depth 1: {1: 6 arrays} is the deepest accepted
    Decoder(b"\xa1\x01" + nested(6)).item(1)
    with pytest.raises(DecodeError):
        Decoder(b"\xa1\x01" + nested(7)).item(1)
    # an empty array at depth 8 is fine, an item at depth 9 is not
    Decoder(b"\xa1\x61x" + b"\x81" * 7 + b"\x80").item(0)


def test_round_trip_encoder():
    v = Map([(0, 1), (1, [b"\x01" * 32, Text(b"x")]), (Text(b"k"), Map([(-1, None)]))])
    assert decode_single(encode(v)) == v
    assert encode(2**64 - 1) == b"\x1b" + b"\xff" * 8


def test_item_check_order_setting():
    # documented setting; the default follows the specification text
    assert cbor.ITEM_CHECK_ORDER in ("spec", "reference")
