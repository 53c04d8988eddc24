import gzip
import hashlib

import pytest
import zstandard

from helm_verify.errors import VerifyError
from helm_verify.pack import canonical_header, parse_header, verify_pack_bytes
from tests.helpers import pack_vectors, read_pack

PACKS = pack_vectors()


def verdict(data, anchors):
    try:
        r = verify_pack_bytes(data, [bytes.fromhex(a) for a in anchors])
    except VerifyError as e:
        return {"result": "reject", "error": e.code}
    return {"result": "accept", "records": r.records, "root": r.root.hex()}


@pytest.mark.parametrize("v", PACKS, ids=[v["id"] for v in PACKS])
def test_pack_vector(v):
    assert verdict(read_pack(v), v["anchors"]) == v["expect"]


VALID = next(v for v in PACKS if v["id"] == "valid/small-run")
TAR = read_pack(VALID)


def entries(tar: bytes):
    out, pos = [], 0
    while tar[pos : pos + 512] != bytes(512):
        name, size = parse_header(tar[pos : pos + 512])
        out.append((name, tar[pos + 512 : pos + 512 + size]))
        pos += 512 + size + (-size) % 512
    return out


def build(ents) -> bytes:
    out = b""
    for name, data in ents:
        out += canonical_header(name, len(data)) + data + bytes((-len(data)) % 512)
    return out + bytes(1024)


def test_wrappers_are_transparent():
    assert verdict(gzip.compress(TAR, mtime=0), VALID["anchors"]) == VALID["expect"]
    assert verdict(zstandard.ZstdCompressor(level=3).compress(TAR), VALID["anchors"]) == VALID["expect"]
    z = zstandard.ZstdCompressor(level=1).compress(TAR)
    assert verdict(z + z, VALID["anchors"])["error"] == "PACK_TRANSPORT_INVALID"  # one frame only
    assert verdict(gzip.compress(TAR, mtime=0) + b"\x00", VALID["anchors"])["error"] == "PACK_TRANSPORT_INVALID"


def test_tar_end_rules():
    assert verdict(TAR[:-1], VALID["anchors"])["error"] == "TAR_TRUNCATED"
    assert verdict(TAR + b"\x00", VALID["anchors"])["error"] == "TAR_TRAILING_DATA"
    assert verdict(TAR[:-1] + b"\x01", VALID["anchors"])["error"] == "TAR_NONZERO_PADDING"
    assert verdict(b"", VALID["anchors"])["error"] == "TAR_TRUNCATED"


def test_header_rules():
    h = canonical_header(b"manifest.cbor", 10)
    assert parse_header(h) == (b"manifest.cbor", 10)
    bad = bytearray(h)
    bad[345] = ord("a")  # prefix not empty (checksum fixed below)
    for pos, val, code in [(345, b"a", "TAR_BAD_PATH"), (400, b"a", "TAR_BAD_PATH"),
                           (156, b"2", "TAR_NOT_REGULAR_FILE"), (265, b"x", "TAR_NON_CANONICAL_HEADER"),
                           (0, b"/", "TAR_BAD_PATH")]:
        b = bytearray(h)
        b[pos : pos + 1] = val
        b[148:156] = b" " * 8
        b[148:156] = b"%06o\x00 " % sum(b)
        with pytest.raises(VerifyError) as e:
            parse_header(bytes(b))
        assert e.value.code == code, pos
    b = bytearray(h)
    b[148:156] = b" 01234\x00 "  # leading space: does not parse
    with pytest.raises(VerifyError) as e:
        parse_header(bytes(b))
    assert e.value.code == "TAR_HEADER_CHECKSUM"


def test_framing_error_is_the_record_decoding_error_whatever_the_segment_size():
    ents = entries(TAR)
    for tail in (100, 70000):
        new = [(n, (d[:0] + b"\x00" + bytes(tail)) if n.startswith(b"records/") else d) for n, d in ents]
        out = verdict(build(new), VALID["anchors"])
        assert out["error"] == "COSE_STRUCTURE", tail


def test_segment_rules():
    ents = entries(TAR)
    seg = next(d for n, d in ents if n.startswith(b"records/"))
    # empty segment
    new = [(n, b"" if n.startswith(b"records/") else d) for n, d in ents]
    assert verdict(build(new), VALID["anchors"])["error"] == "PACK_SEGMENT_INVALID"
    # last record cut by the segment end
    new = [(n, seg[:-1] if n.startswith(b"records/") else d) for n, d in ents]
    assert verdict(build(new), VALID["anchors"])["error"] == "PACK_SEGMENT_INVALID"
    # a short segment followed by another
    half = seg[: len(seg) // 2]
    from helm_verify.pack import frame_record
    pos = 0
    while True:
        end = frame_record(seg, pos, len(seg), len(seg))
        if end > len(seg) // 2:
            break
        pos = end
    new = []
    for n, d in ents:
        if n.startswith(b"records/"):
            new += [(b"records/000000.cbor", seg[:pos]), (b"records/000001.cbor", seg[pos:])]
        else:
            new.append((n, d))
    assert verdict(build(new), VALID["anchors"])["error"] == "PACK_SEGMENT_INVALID"
    assert half  # silence linters


def test_withheld_size_checked_at_header():
    ents = entries(TAR)
    new = [(n, b"\x58\x20" + bytes(31) if n == b"withheld.cbor" else d) for n, d in ents]
    assert verdict(build(new), VALID["anchors"])["error"] == "PACK_WITHHELD_INVALID"


def test_blob_rules():
    ents = entries(TAR)
    blob = b"extra"
    name = b"blobs/sha256/" + hashlib.sha256(blob).hexdigest().encode()
    new = ents[:2] + sorted([(n, d) for n, d in ents if n.startswith(b"blobs/")] + [(name, blob)]) + \
        [(n, d) for n, d in ents if n.startswith(b"records/")]
    # the manifest no longer matches (blob count) before the unreferenced blob is seen
    assert verdict(build(new), VALID["anchors"])["error"] == "PACK_MANIFEST_MISMATCH"
    new = [(n, d + b"x" if n.startswith(b"blobs/") else d) for n, d in ents]
    assert verdict(build(new), VALID["anchors"])["error"] == "PACK_BLOB_HASH_MISMATCH"
