"""Strict decoder for the deterministic CBOR profile of spec/record-format.md §2.

Values are returned as plain Python objects, keeping the CBOR major type:

- unsigned integer (major type 0): ``int`` >= 0
- negative integer (major type 1): ``int`` < 0
- byte string: ``bytes``
- text string: :class:`Text` (a ``bytes`` subclass holding the UTF-8 bytes)
- array: ``list``
- map: :class:`Map` (a list of ``(key, value)`` pairs, in encoded order)
- ``false`` / ``true`` / ``null``: ``False`` / ``True`` / ``None``

Always test types with ``type(x) is int`` (``bool`` is a subclass of ``int``).
"""

import os

from .errors import DecodeError

MAX_DEPTH = 8

# Where the two item checks that are not about the head's own bytes run: the
# length-or-count-beyond-input rule (RF §2.1) and the ban on undefined and the
# unassigned simple values (RF §2.4).
#
# "spec": as an earlier draft of the specification read, when the head is read, before
#   any type comparison (verification.md §4: "at the moment the head is read
#   (before its type is compared)"; RF §2.4: "wherever they appear").
# "reference" (default; now what the specification says, RF §2.1, §2.4, §2.7): where a step
#   expects one type, the type is compared first and these checks run only on an
#   item of the expected type; items read as "any value" (payload values,
#   extensions, claims) are checked right after the head.
# See implementations/python/README.md, "Known disagreements".
ITEM_CHECK_ORDER = os.environ.get("HELM_VERIFY_CBOR_ORDER", "reference")
if ITEM_CHECK_ORDER not in ("spec", "reference"):
    raise ValueError("HELM_VERIFY_CBOR_ORDER must be spec or reference")

MALFORMED = "CBOR_MALFORMED"
NON_CANONICAL = "CBOR_NON_CANONICAL"


class Text(bytes):
    """A CBOR text string: its UTF-8 bytes (already validated)."""

    def __repr__(self) -> str:
        return "Text(%r)" % self.decode("utf-8")


class Map(list):
    """A CBOR map: list of (key, value) pairs in encoded order."""

    def get_uint_dict(self) -> dict:
        return {k: v for k, v in self}


def is_uint(x) -> bool:
    return type(x) is int and x >= 0


def is_int(x) -> bool:
    return type(x) is int


def is_bytes(x) -> bool:
    return type(x) is bytes


def is_text(x) -> bool:
    return type(x) is Text


def is_array(x) -> bool:
    return type(x) is list


def is_map(x) -> bool:
    return type(x) is Map


def validate_utf8(b: bytes) -> bool:
    """RFC 3629 UTF-8: Python's strict codec rejects overlong forms, surrogates
    and code points above U+10FFFF."""
    try:
        b.decode("utf-8", errors="strict")
        return True
    except UnicodeDecodeError:
        return False


class Decoder:
    """Reads items from ``data[pos:end]``. Every failure raises DecodeError."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def remaining(self) -> int:
        return self.end - self.pos

    def head(self) -> tuple[int, int]:
        """Read the head of an item whose type the caller then compares.

        In "spec" order this includes the item checks (see ITEM_CHECK_ORDER); in
        "reference" order the caller runs them with ``typed()`` once the type
        matched."""
        mt, arg = self.raw_head()
        if ITEM_CHECK_ORDER == "spec":
            self.item_checks(mt, arg)
        return mt, arg

    def typed(self, mt: int, arg: int) -> None:
        """Called by a step that expects one type, after the type matched."""
        if ITEM_CHECK_ORDER == "reference":
            self.item_checks(mt, arg)

    def item_checks(self, mt: int, arg: int) -> None:
        if mt == 7 and (arg <= 19 or arg == 23):
            # undefined and the unassigned simple values (RF §2.4)
            raise DecodeError(NON_CANONICAL)
        if mt in (2, 3, 4, 5) and arg > self.end - self.pos:
            # RF §2.1: a length or count beyond the remaining input
            raise DecodeError(MALFORMED)

    def raw_head(self) -> tuple[int, int]:
        """Read one item head (RF §2.1). Returns (major type, argument).

        Checks, in order: truncation, mt 7 with ai >= 24, reserved ai 28-30,
        indefinite length (ai 31) and shortest form."""
        if self.pos >= self.end:
            raise DecodeError(MALFORMED)
        b = self.data[self.pos]
        mt = b >> 5
        ai = b & 0x1F
        if mt == 7 and ai >= 24:
            raise DecodeError(NON_CANONICAL)
        if ai < 24:
            arg = ai
            self.pos += 1
        elif ai <= 27:
            n = 1 << (ai - 24)
            if self.pos + 1 + n > self.end:
                raise DecodeError(MALFORMED)
            arg = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "big")
            minimum = (24, 0x100, 0x10000, 0x100000000)[ai - 24]
            if arg < minimum:
                raise DecodeError(NON_CANONICAL)
            self.pos += 1 + n
        elif ai <= 30:
            raise DecodeError(MALFORMED)
        else:  # ai == 31: indefinite length or break
            raise DecodeError(NON_CANONICAL)
        return mt, arg

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise DecodeError(MALFORMED)
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def item(self, depth: int = 0):
        """Read one complete item of the profile at the given depth (RF §2.6)."""
        if depth > MAX_DEPTH:
            raise DecodeError(MALFORMED)
        mt, arg = self.raw_head()
        self.item_checks(mt, arg)
        return self._body(mt, arg, depth)

    def _body(self, mt: int, arg: int, depth: int):
        if mt == 0:
            return arg
        if mt == 1:
            return -1 - arg
        if mt == 2:
            return self.take(arg)
        if mt == 3:
            raw = self.take(arg)
            if not validate_utf8(raw):
                raise DecodeError(MALFORMED)
            return Text(raw)
        if mt == 4:
            return [self.item(depth + 1) for _ in range(arg)]
        if mt == 5:
            out = Map()
            prev = None
            for _ in range(arg):
                start = self.pos
                k = self.item(depth + 1)
                enc = bytes(self.data[start : self.pos])
                if prev is not None and not enc > prev:
                    raise DecodeError(NON_CANONICAL)
                prev = enc
                v = self.item(depth + 1)
                out.append((k, v))
            return out
        if mt == 6:
            # RF §2.4: no tag inside the payload
            raise DecodeError(NON_CANONICAL)
        # mt == 7: only 20, 21, 22 get here
        return {20: False, 21: True, 22: None}[arg]


def decode_single(data: bytes):
    """Decode exactly one item (depth 0) with nothing after it."""
    d = Decoder(data)
    v = d.item(0)
    if not d.at_end():
        raise DecodeError("CBOR_TRAILING_BYTES")
    return v


# ---- encoding helpers (used for signed challenges and by tests) ----

def encode_head(mt: int, arg: int) -> bytes:
    if arg < 24:
        return bytes([(mt << 5) | arg])
    if arg <= 0xFF:
        return bytes([(mt << 5) | 24, arg])
    if arg <= 0xFFFF:
        return bytes([(mt << 5) | 25]) + arg.to_bytes(2, "big")
    if arg <= 0xFFFFFFFF:
        return bytes([(mt << 5) | 26]) + arg.to_bytes(4, "big")
    return bytes([(mt << 5) | 27]) + arg.to_bytes(8, "big")


def encode(v) -> bytes:
    """Deterministic encoder for the value model above (maps are sorted)."""
    if v is False:
        return b"\xf4"
    if v is True:
        return b"\xf5"
    if v is None:
        return b"\xf6"
    if type(v) is int:
        return encode_head(0, v) if v >= 0 else encode_head(1, -1 - v)
    if type(v) is Text:
        return encode_head(3, len(v)) + bytes(v)
    if type(v) is str:
        b = v.encode("utf-8")
        return encode_head(3, len(b)) + b
    if isinstance(v, (bytes, bytearray)):
        return encode_head(2, len(v)) + bytes(v)
    if type(v) is list:
        return encode_head(4, len(v)) + b"".join(encode(x) for x in v)
    if isinstance(v, (Map, dict)):
        items = v.items() if isinstance(v, dict) else v
        enc = sorted((encode(k), encode(x)) for k, x in items)
        return encode_head(5, len(enc)) + b"".join(k + x for k, x in enc)
    raise TypeError(type(v))
