"""EvidencePack reader of spec/evidencepack.md: strict ustar, manifest, blobs,
withheld list, record segments, references and the end checks (§5)."""

import hashlib
import re
from dataclasses import dataclass

from . import ed25519
from . import registries as R
from .cbor import Decoder, is_array, is_bytes, is_map, is_text, is_uint
from .errors import DecodeError, VerifyError
from .merkle import EMPTY_ROOT, leaf_hash, mth, verify_consistency, verify_inclusion
from .record import decode_envelope, decode_protected, decode_record, sig_structure, walk_payload
from .transport import open_source
from .verifier import Partial, Verifier

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
MANIFEST_MAX = 1024
SEGMENT_RECORDS = 16384
MAX_RECORD = 65536
MAX_PROOF_HASHES = 64

_NAME_CHARS = re.compile(rb"\A[a-z0-9._/-]{1,100}\Z")
_BLOB_NAME = re.compile(rb"\Ablobs/sha256/([0-9a-f]{64})\Z")
_SEGMENT_NAME = re.compile(rb"\Arecords/([0-9]{6})\.cbor\Z")


def pack_error(code: str, detail: str = "") -> VerifyError:
    return VerifyError(code, None, detail)


@dataclass
class PackResult:
    records: int
    root: bytes


# ------------------------------------------------------------------ tar headers

def _octal(field: bytes):
    """Parse a numeric field (evidencepack.md §1.2): the bytes before the first NUL
    or space, at least one, all octal digits. None if it does not parse."""
    end = len(field)
    for i, c in enumerate(field):
        if c in (0, 0x20):
            end = i
            break
    digits = field[:end]
    if not digits or any(c not in b"01234567" for c in digits):
        return None
    return int(digits, 8)


def canonical_header(name: bytes, size: int) -> bytes | None:
    if size >= 8**11:
        return None
    h = bytearray(BLOCK)
    h[0 : len(name)] = name
    h[100:108] = b"0000644\x00"
    h[108:116] = b"0000000\x00"
    h[116:124] = b"0000000\x00"
    h[124:136] = b"%011o\x00" % size
    h[136:148] = b"00000000000\x00"
    h[148:156] = b" " * 8
    h[156] = ord("0")
    h[257:263] = b"ustar\x00"
    h[263:265] = b"00"
    h[329:337] = b"0000000\x00"
    h[337:345] = b"0000000\x00"
    chk = sum(h)
    h[148:156] = b"%06o\x00 " % chk
    return bytes(h)


def _valid_path(name: bytes) -> bool:
    if not _NAME_CHARS.match(name):
        return False
    if name.startswith(b"/") or name.endswith(b"/"):
        return False
    return all(c not in (b"", b".", b"..") for c in name.split(b"/"))


def parse_header(h: bytes) -> tuple[bytes, int]:
    """§1.2 checks 2-5 (check 1, the zero block, is the caller's)."""
    chk = _octal(h[148:156])
    computed = sum(h[:148]) + 8 * 0x20 + sum(h[156:])
    if chk is None or chk != computed:
        raise pack_error("TAR_HEADER_CHECKSUM")
    if h[156] != ord("0"):
        raise pack_error("TAR_NOT_REGULAR_FILE")
    name = h[0:100].split(b"\x00", 1)[0]
    if not _valid_path(name) or any(h[345:500]):
        raise pack_error("TAR_BAD_PATH")
    size = _octal(h[124:136])
    canon = canonical_header(name, size) if size is not None else None
    if canon is None or canon != h:
        raise pack_error("TAR_NON_CANONICAL_HEADER")
    return name, size


# ------------------------------------------------------------------ framing

class _NeedMore(Exception):
    """The bytes read so far end inside the record (the archive is truncated)."""


class _NotARecord(Exception):
    """A head that does not fit the framing: the record decoder names the defect."""


_FRAME_STEPS = ((6, 18), (4, 4), (2, None), (5, 0), (2, None), (2, 64))


def _frame_len(buf: bytes, pos: int, limit: int):
    """Length of the record at ``pos`` from its six heads, reading no byte at or
    beyond ``limit``; None when a head lies (partly) beyond it. Byte-string contents
    are skipped without being read."""
    start = pos
    for major, want in _FRAME_STEPS:
        if pos >= limit:
            return None
        b = buf[pos]
        if b >> 5 != 7 and 24 <= (b & 0x1F) <= 27 and pos + 1 + (1 << ((b & 0x1F) - 24)) > limit:
            return None
        dec = Decoder(buf, pos, limit)
        try:
            mt, arg = dec.raw_head()  # head errors other than truncation
        except DecodeError:
            raise _NotARecord()
        if mt != major or (want is not None and arg != want):
            raise _NotARecord()
        pos = dec.pos + (arg if major == 2 else 0)
    return pos - start


def frame_record(buf: bytes, pos: int, avail: int, seg_end: int) -> int:
    """Frame one record from its CBOR heads (evidencepack.md §2); returns its end.

    ``buf[:avail]`` are the bytes read so far of a segment of ``seg_end`` bytes
    (``avail < seg_end`` only when the archive is truncated). At most the first
    65,536 bytes of the record are examined:

    - a head that is not the expected one: the error the record decoder
      (verification.md §4.1) reports for the bytes from the record's start to the
      end of the segment, without the size check D0 (DecodeError);
    - heads giving a length above 65,536, or not all within the first 65,536 bytes
      of a record that has more bytes in its segment: RECORD_TOO_LARGE;
    - otherwise a record that would cross the end of its segment:
      PACK_SEGMENT_INVALID;
    - _NeedMore when the answer depends on bytes not read (truncated archive)."""
    window = min(seg_end - pos, MAX_RECORD)
    readable = min(avail - pos, window)
    try:
        n = _frame_len(buf, pos, pos + readable)
    except _NotARecord:
        try:
            decode_envelope(bytes(buf[pos:avail]), check_size=False)
        except DecodeError:
            raise
        raise pack_error("PACK_SEGMENT_INVALID", "record framing failed")
    if n is None:
        if readable < window:
            raise _NeedMore()
        if window == MAX_RECORD:
            raise DecodeError("RECORD_TOO_LARGE")
        raise pack_error("PACK_SEGMENT_INVALID", "record crosses the segment end")
    if n > MAX_RECORD:
        raise DecodeError("RECORD_TOO_LARGE")
    if pos + n > seg_end:
        raise pack_error("PACK_SEGMENT_INVALID", "record crosses the segment end")
    if pos + n > avail:
        raise _NeedMore()
    return pos + n


# ------------------------------------------------------------------ proof items

def parse_item(buf: bytes, pos: int, avail: int, seg_end: int):
    """A partial pack's proof item at ``pos`` (evidencepack.md §9.3), checked byte by
    byte: returns (end, (index, inclusion, consistency)). The first byte that cannot
    continue the item is PACK_PROOF_INVALID; the segment's end inside the item is
    PACK_SEGMENT_INVALID; _NeedMore if the archive was cut short before."""

    def byte():
        nonlocal pos
        if pos >= seg_end:
            raise pack_error("PACK_SEGMENT_INVALID", "a proof item crosses the segment end")
        if pos >= avail:
            raise _NeedMore()
        b = buf[pos]
        pos += 1
        return b

    def bad(why):
        return pack_error("PACK_PROOF_INVALID", why)

    def head(major):
        b = byte()
        if b >> 5 != major:
            raise bad("major type")
        ai = b & 0x1F
        if ai < 24:
            return ai
        if ai > 27:
            raise bad("additional information")
        n = 1 << (ai - 24)
        v = 0
        for _ in range(n):
            v = (v << 8) | byte()
        if v < (24, 0x100, 0x10000, 0x100000000)[ai - 24]:
            raise bad("not the shortest head")
        return v

    def path():
        n = head(4)
        if n > MAX_PROOF_HASHES:
            raise bad("more than 64 hashes")
        out = []
        for _ in range(n):
            if byte() != 0x58 or byte() != 0x20:
                raise bad("a path element is not a 32-byte byte string")
            h = bytearray()
            for _ in range(32):
                h.append(byte())
            out.append(bytes(h))
        return out

    if byte() != 0x83:
        raise bad("not an array of 3")
    index = head(0)
    inclusion = path()
    consistency = path()
    return pos, (index, inclusion, consistency)


# ------------------------------------------------------------------ manifest

@dataclass
class Manifest:
    kid: bytes
    protected: bytes
    payload: bytes
    signature: bytes
    values: dict


def decode_manifest(data: bytes) -> Manifest:
    try:
        env = decode_envelope(data, check_size=False)
        kid = decode_protected(env.protected)
        m = walk_payload(env.payload, 15)
    except DecodeError as e:
        raise pack_error("PACK_MANIFEST_INVALID", e.code)

    def bad(why):
        return pack_error("PACK_MANIFEST_INVALID", why)

    for k in range(13):
        if k not in m:
            raise bad("key %d missing" % k)
    if not is_text(m[0]) or bytes(m[0]) != b"helm-evidencepack/1":
        raise bad("format")
    # §3 and §9.2: kind 0 has keys 0-12, kind 1 keys 0-15.
    if not is_uint(m[1]) or m[1] not in (0, 1):
        raise bad("kind")
    if sorted(m) != list(range(13 if m[1] == 0 else 16)):
        raise bad("keys for kind %d" % m[1])
    if m[1] == 1:
        if not is_uint(m[13]):
            raise bad("key 13")
        if not is_bytes(m[14]) or len(m[14]) != 32:
            raise bad("key 14")
        if not is_map(m[15]):
            raise bad("selection")
        keys = [k for k, _ in m[15]]  # canonical order was checked by the decoder
        sel = dict(m[15])
        if not 1 <= len(keys) <= 3 or not all(is_uint(k) and k in (0, 1, 2) for k in keys):
            raise bad("selection")
        m[15] = sel
        if 0 in sel and (not is_text(sel[0]) or len(bytes(sel[0])) > 256):
            raise bad("selection session")
        if any(k in sel and not is_uint(sel[k]) for k in (1, 2)):
            raise bad("selection bounds")
        if 1 in sel and 2 in sel and sel[1] > sel[2]:
            raise bad("selection: since after until")
    for k in (2, 5, 6, 8, 11, 12):
        if not is_uint(m[k]):
            raise bad("key %d" % k)
    for k in (3, 4, 7, 9):
        if not is_bytes(m[k]) or len(m[k]) != 32:
            raise bad("key %d" % k)
    if not is_array(m[10]) or len(m[10]) != 9 or not all(is_uint(x) for x in m[10]):
        raise bad("per_kind")
    return Manifest(kid, env.protected, env.payload, env.signature, m)


# ------------------------------------------------------------------ the reader

class PackReader:
    def __init__(self, anchors: list[bytes]):
        self.verifier = Verifier(anchors)
        self.manifest: Manifest | None = None
        self.state = "manifest"  # manifest, withheld, blobs, records
        self.withheld: list[bytes] = []
        self.withheld_set: set[bytes] = set()
        self.blobs: list[bytes] = []
        self.blob_set: set[bytes] = set()
        self.referenced: set[bytes] = set()
        self.segments = 0
        self.last_segment_records = 0
        self.per_kind = [0] * 9
        self.escalations = 0
        self.streams: set[tuple[bytes, bytes]] = set()
        self.partial: Partial | None = None
        self.last_position: int | None = None

    # -- entries

    def _entry_kind(self, name: bytes, size: int) -> str:
        """§1.3 order; returns the entry kind or raises."""
        if name == b"manifest.cbor":
            if self.state != "manifest":
                raise pack_error("PACK_UNEXPECTED_ENTRY", name.decode())
            if size > MANIFEST_MAX:
                raise pack_error("PACK_MANIFEST_INVALID", "manifest over 1024 bytes")
            return "manifest"
        if name == b"withheld.cbor":
            if self.state != "withheld":
                raise pack_error("PACK_UNEXPECTED_ENTRY", name.decode())
            if size % 34:
                raise pack_error("PACK_WITHHELD_INVALID", "not a sequence of 34-byte items")
            return "withheld"
        mb = _BLOB_NAME.match(name)
        if mb:
            if self.state not in ("blobs",):
                raise pack_error("PACK_UNEXPECTED_ENTRY", name.decode())
            blob = bytes.fromhex(mb.group(1).decode())
            if self.blobs and not blob > self.blobs[-1]:
                raise pack_error("PACK_BLOB_ORDER", name.decode())
            if blob in self.withheld_set:
                raise pack_error("PACK_BLOB_ORDER", "withheld and present: " + name.decode())
            self._blob_name = blob
            return "blob"
        ms = _SEGMENT_NAME.match(name)
        if ms:
            if self.state not in ("blobs", "records") or int(ms.group(1)) != self.segments:
                raise pack_error("PACK_UNEXPECTED_ENTRY", name.decode())
            if self.segments > 0 and self.last_segment_records != SEGMENT_RECORDS:
                raise pack_error("PACK_SEGMENT_INVALID", "a segment before the last is not full")
            return "segment"
        raise pack_error("PACK_UNEXPECTED_ENTRY", name.decode())

    def _manifest(self, data: bytes) -> None:
        self.manifest = decode_manifest(data)
        v = self.manifest.values
        if v[1] == 1:
            sel = v[15]
            self.partial = Partial(
                tree_size=v[13], tree_root=bytes(v[14]),
                session=bytes(sel[0]) if 0 in sel else None,
                since=sel.get(1), until=sel.get(2))
            self.verifier.partial = self.partial
        self.state = "withheld"

    def _withheld(self, data: bytes, complete: bool) -> None:
        # byte by byte: 58 20 <32 bytes>, strictly ascending
        for i in range(0, len(data) - len(data) % 34, 34):
            item = data[i : i + 34]
            if item[:2] != b"\x58\x20":
                raise pack_error("PACK_WITHHELD_INVALID", "not a 32-byte byte string")
            name = item[2:]
            if self.withheld and not name > self.withheld[-1]:
                raise pack_error("PACK_WITHHELD_INVALID", "not strictly ascending")
            self.withheld.append(name)
            self.withheld_set.add(name)
        self.state = "blobs"

    def _blob(self, data: bytes) -> None:
        if hashlib.sha256(data).digest() != self._blob_name:
            raise pack_error("PACK_BLOB_HASH_MISMATCH", self._blob_name.hex())
        self.blobs.append(self._blob_name)
        self.blob_set.add(self._blob_name)

    def _segment(self, data: bytes, size: int) -> None:
        self.state = "records"
        self.segments += 1
        n = 0
        pos = 0
        if size == 0:
            raise pack_error("PACK_SEGMENT_INVALID", "empty segment")
        while pos < len(data):
            try:
                rec_end = frame_record(data, pos, len(data), size)
            except _NeedMore:
                return  # truncated inside a record: the caller reports it
            except DecodeError as e:
                raise self.verifier.fail_at(e.code)
            if n == SEGMENT_RECORDS:
                raise pack_error("PACK_SEGMENT_INVALID", "more than 16384 records")
            if self.partial is not None:
                try:
                    item_end, item = parse_item(data, rec_end, len(data), size)
                except _NeedMore:
                    return
                self._partial_unit(data[pos:rec_end], item)
                pos = item_end
                n += 1
                continue
            rec = self.verifier.push(data[pos:rec_end])
            self._after_record(rec)
            pos = rec_end
            n += 1
        self.last_segment_records = n

    def _partial_unit(self, raw: bytes, item) -> None:
        """evidencepack.md §9.4, steps 1-6."""
        index, inclusion, consistency = item
        t, root = self.partial.tree_size, self.partial.tree_root
        if self.last_position is not None and index <= self.last_position:  # 1
            raise pack_error("PACK_PROOF_ORDER", "position %d after %d" % (index, self.last_position))
        if index > t:  # 2
            raise pack_error("PACK_PROOF_INVALID", "position beyond the tree")
        if index == t and inclusion:
            raise pack_error("PACK_PROOF_INVALID", "inclusion path on the checkpoint")
        rh = hashlib.sha256(raw).digest()
        if index < t and not verify_inclusion(index, t, leaf_hash(rh), inclusion, root):
            raise pack_error("PACK_PROOF_MISMATCH", "position %d" % index)
        root_proven = False
        try:
            rec = decode_record(raw)  # 3 (a decoding error is the verifier's to report)
        except DecodeError:
            rec = None
        if rec is not None:  # 4
            if index == t and rec.kind != R.CHECKPOINT:
                raise pack_error("PACK_CHECKPOINT_INVALID", "position %d is not a CHECKPOINT" % index)
            if rec.kind == R.CHECKPOINT and index < t:
                count, croot = rec.body["count"], rec.body["root"]
                if count == 0:
                    root_proven = not consistency and croot == EMPTY_ROOT
                else:
                    root_proven = bool(consistency) and verify_consistency(count, croot, t, root, consistency)
            elif consistency:
                raise pack_error("PACK_PROOF_INVALID", "consistency path on a record that is not a CHECKPOINT below the tree")
        rec = self.verifier.push(raw, index, root_proven)  # 5
        self._after_record(rec)  # 6
        self.last_position = index

    def _after_record(self, rec) -> None:
        ref = None
        b = rec.body
        if rec.kind == R.INTENT:
            ref = b["args"]
        elif rec.kind == R.EFFECT:
            ref = b["output"]
        elif rec.kind == R.POLICY:
            ref = b["bundle"]
        elif rec.kind == R.ATTESTATION:
            ref = b["subject"]
        if ref is not None:
            if ref not in self.blob_set and ref not in self.withheld_set:
                raise pack_error("PACK_BLOB_MISSING", ref.hex())
            self.referenced.add(ref)
        self.per_kind[rec.kind - 1] += 1
        if rec.kind == R.DECISION and b["verdict"] == R.ESCALATE:
            self.escalations += 1
        self.streams.add((rec.kid, rec.session))

    # -- the whole archive

    def read(self, data: bytes) -> PackResult:
        src = open_source(data)

        def read_or_truncated(n: int) -> tuple[bytes, bool]:
            got = bytearray()
            while len(got) < n:
                chunk = src.read(min(n - len(got), 1 << 20))
                if not chunk:
                    break
                got += chunk
            return bytes(got), len(got) == n

        def truncated():
            src.raise_pending()
            return pack_error("TAR_TRUNCATED")

        while True:
            hdr, ok = read_or_truncated(BLOCK)
            if not ok:
                raise truncated()
            if hdr == ZERO_BLOCK:
                if self.state != "records":
                    raise pack_error("PACK_UNEXPECTED_ENTRY", "end of archive before any record segment")
                break
            name, size = parse_header(hdr)
            kind = self._entry_kind(name, size)
            body, complete = read_or_truncated(size)
            if kind == "segment":
                self._segment(body, size)
            elif kind == "withheld":
                self._withheld(body, complete)
            if not complete:
                raise truncated()
            if kind == "manifest":
                self._manifest(body)
            elif kind == "blob":
                self._blob(body)
            pad_len = (-size) % BLOCK
            pad, ok = read_or_truncated(pad_len)
            if pad.count(0) != len(pad):
                raise pack_error("TAR_NONZERO_PADDING")
            if not ok:
                raise truncated()
        second, ok = read_or_truncated(BLOCK)
        if second.count(0) != len(second):
            raise pack_error("TAR_NONZERO_PADDING")
        if not ok:
            raise truncated()
        if src.read(1):
            raise pack_error("TAR_TRAILING_DATA")
        src.finish()
        return self._end()

    def _end(self) -> PackResult:
        count, root = self.verifier.finish()  # 1. EMPTY_STREAM
        if self.partial is not None and self.last_position != self.partial.tree_size:
            raise pack_error("PACK_CHECKPOINT_INVALID", "the pack does not end with its checkpoint")
        man = self.manifest
        reg = self.verifier.registry.get(man.kid)  # 2.
        if reg is None or reg.anchor or reg.retired or R.ROLE_KERNEL not in reg.roles:
            raise pack_error("PACK_MANIFEST_SIGNER")
        if not ed25519.verify(man.kid, sig_structure(man.protected, man.payload), man.signature):  # 3.
            raise pack_error("PACK_MANIFEST_SIGNATURE")
        actual = {  # 4.
            2: count,
            3: root,
            4: self.verifier.last_hash,
            5: self.segments,
            6: len(self.blobs),
            7: mth(self.blobs),
            8: len(self.withheld),
            9: mth(self.withheld),
            10: self.per_kind,
            11: self.escalations,
            12: len(self.streams),
        }
        for k in range(2, 13):
            if man.values[k] != actual[k]:
                raise pack_error("PACK_MANIFEST_MISMATCH", "manifest key %d" % k)
        for name in self.blobs + self.withheld:  # 5.
            if name not in self.referenced:
                raise pack_error("PACK_BLOB_UNREFERENCED", name.hex())
        if self.partial is not None:  # 6.
            extra = self.verifier.unselected()
            if extra is not None:
                raise pack_error("PACK_RECORD_UNSELECTED", "record %d" % extra[0])
        return PackResult(count, root)


def verify_pack_bytes(data: bytes, anchors: list[bytes]) -> PackResult:
    """Verify a whole pack; raises VerifyError (record errors carry their own code)."""
    return PackReader(anchors).read(data)
