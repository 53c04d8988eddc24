#!/usr/bin/env python3
"""Differential fuzzing: the Python verifier against the Rust verifier.

    differential_fuzz.py [--seconds N] [--batch N] [--seed S]
                         [--python CMD] [--rust CMD] [--findings DIR]

Mutates the valid and invalid vectors of test-vectors/ (record streams and packs),
asks both implementations for their verdict through the helm-conformance/1 protocol
(`batch` command: one process per batch of cases, not per case) and keeps every
disagreement in verdict, error code or record index (or count and root) as a JSON file
in findings/ (bytes in hex), a candidate for a new vector.

Mutations range from blind byte edits to structure-aware ones: a payload is decoded,
changed (fields, types, values, map keys), re-encoded and **re-signed** with the public
test keys (their seeds are SHA-256 of "HELM TEST KEY - PUBLIC, NEVER USE FOR REAL -
<name>", spec/test-vectors.md §6), and the stream can be **repaired** afterwards
(parent hashes re-linked, checkpoint counts and roots recomputed, approvals and
cosignatures re-signed), so that mutants reach the semantic rules instead of failing
the first signature check. Pack mutants are rebuilt as canonical tar archives, with
the manifest recomputed and re-signed, then optionally damaged at the tar level or
wrapped in gzip or zstd.

The Rust side is the binary `helm-conformance-adapter` (airgap-cli/src/bin/); by
default it is run as `cargo run -q --release -p airgap-cli --bin
helm-conformance-adapter --` from the repository root.
"""

import argparse
import gzip
import hashlib
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

from helm_verify import ed25519  # noqa: E402
from helm_verify.cbor import Decoder, Map, Text, encode, encode_head  # noqa: E402
from helm_verify.errors import DecodeError  # noqa: E402
from helm_verify.merkle import mth  # noqa: E402
from helm_verify.record import sig_structure  # noqa: E402
from helm_verify.verifier import approval_challenge, checkpoint_challenge  # noqa: E402

VECTORS = os.path.join(ROOT, "test-vectors")

# ---------------------------------------------------------------- test keys


def load_keys() -> dict:
    with open(os.path.join(VECTORS, "keys", "test-keys.json")) as f:
        pubs = json.load(f)
    out = {}
    for name, pub in pubs.items():
        if name == "warning":
            continue
        seed = hashlib.sha256(("HELM TEST KEY - PUBLIC, NEVER USE FOR REAL - " + name).encode()).digest()
        pk = ed25519.public_key(seed)
        if pk.hex() != pub:
            raise SystemExit("derived key for %s does not match test-keys.json" % name)
        out[pk] = (name, seed)
    return out


KEYS = load_keys()
PUB = {name: pk for pk, (name, _) in KEYS.items()}


def sign_with(pk: bytes, msg: bytes) -> bytes | None:
    k = KEYS.get(pk)
    return ed25519.sign(k[1], msg) if k else None


# ---------------------------------------------------------------- records


def envelope(protected: bytes, payload: bytes, sig: bytes) -> bytes:
    return b"\xd2\x84" + encode_head(2, len(protected)) + protected + b"\xa0" + encode_head(2, len(payload)) + payload + encode_head(2, len(sig)) + sig


class Rec:
    """A record split into its envelope parts (when it frames)."""

    __slots__ = ("raw", "protected", "payload", "sig", "kid", "tree")

    def __init__(self, raw: bytes):
        self.raw = raw
        self.protected = self.payload = self.sig = self.kid = self.tree = None
        try:
            d = Decoder(raw)
            if d.head() != (6, 18) or d.head() != (4, 4):
                return
            mt, n = d.head()
            if mt != 2:
                return
            prot = d.take(n)
            if d.head() != (5, 0):
                return
            mt, n = d.head()
            if mt != 2:
                return
            pay = d.take(n)
            mt, n = d.head()
            if mt != 2:
                return
            sig = d.take(n)
            if not d.at_end():
                return
        except DecodeError:
            return
        self.protected, self.payload, self.sig = prot, pay, sig
        if len(prot) == 38 and prot[:6] == bytes.fromhex("a20127045820"):
            self.kid = prot[6:]
        try:
            t = Decoder(pay).item(0)
            self.tree = t if type(t) is Map else None
        except DecodeError:
            self.tree = None

    def field(self, k):
        if self.tree is None:
            return None
        for kk, v in self.tree:
            if kk == k:
                return v
        return None

    def set_field(self, k, v):
        if self.tree is None:
            return
        for i, (kk, _) in enumerate(self.tree):
            if kk == k:
                self.tree[i] = (k, v)
                return
        self.tree.append((k, v))

    def rebuild(self, resign=True):
        """Re-encode the payload tree and re-sign with the kid's test key."""
        if self.protected is None:
            return
        if self.tree is not None:
            self.payload = encode(self.tree)
        if resign and self.kid is not None:
            s = sign_with(self.kid, sig_structure(self.protected, self.payload))
            if s is not None:
                self.sig = s
        self.raw = envelope(self.protected, self.payload, self.sig)


INTERESTING_INTS = [0, 1, 2, 3, 5, 8, 9, 10, 16, 17, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, -1, -8, -2**64]
INTERESTING_TEXT = [
    "", "a", "kernel", "witness", "approver", "policy-author", "Kernel", "kernel ", "x" * 32, "x" * 33, "y" * 256, "y" * 257, "z" * 1025,
    "POLICY_ALLOW", "APPROVAL_GRANTED", "POLICY_DENY", "APPROVAL_TIMEOUT", "POLICY_ESCALATE", "TOOL_DEFINITION_CHANGED",
    "RESULT_WITHOUT_PERMIT", "SANDBOX_VIOLATION", "tool-pin", "sandbox-module", "kernel-config", "session-1", "session-2",
    "agent:alice", "helm-evidencepack/1", "a.b_c-d", "\u00e9", "m" * 64, "m" * 65,
]


def random_value(rng: random.Random, depth=0):
    r = rng.random()
    if r < 0.25:
        return rng.choice(INTERESTING_INTS)
    if r < 0.45:
        return Text(rng.choice(INTERESTING_TEXT).encode())
    if r < 0.65:
        n = rng.choice([0, 1, 16, 31, 32, 33, 63, 64, 65])
        return bytes(rng.getrandbits(8) for _ in range(n))
    if r < 0.75:
        return rng.choice([False, True, None])
    if r < 0.87 and depth < 10:
        return [random_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 2, 17, 33]) if depth < 2 else rng.randint(0, 2))]
    if depth < 10:
        m = Map()
        for k in rng.sample(range(8), rng.randint(0, 3)):
            m.append((k, random_value(rng, depth + 1)))
        return m
    return 0


def tweak_value(rng: random.Random, v, keys: dict):
    """A plausible change of one value of the same or another type."""
    t = type(v)
    r = rng.random()
    if r < 0.15:
        return random_value(rng)
    if t is int:
        return rng.choice([v + 1, v - 1, v + rng.randint(2, 5000), 0, rng.choice(INTERESTING_INTS)]) if -2**64 <= v < 2**64 else 0
    if t is bytes:
        if len(v) == 32 and r < 0.5:
            return rng.choice(list(keys) + [hashlib.sha256(v).digest(), bytes(32), b"\xff" * 32])
        b = bytearray(v)
        if b and rng.random() < 0.6:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif rng.random() < 0.5:
            b = b[:-1]
        else:
            b.append(rng.getrandbits(8))
        return bytes(b)
    if t is Text:
        return Text(rng.choice(INTERESTING_TEXT).encode())
    if t is list:
        lst = list(v)
        op = rng.randrange(5)
        if op == 0 and lst:
            del lst[rng.randrange(len(lst))]
        elif op == 1 and lst:
            lst.insert(rng.randrange(len(lst) + 1), rng.choice(lst))
        elif op == 2 and len(lst) > 1:
            i, j = rng.sample(range(len(lst)), 2)
            lst[i], lst[j] = lst[j], lst[i]
        elif op == 3 and lst:
            i = rng.randrange(len(lst))
            lst[i] = tweak_value(rng, lst[i], keys)
        else:
            lst.append(random_value(rng))
        return lst
    if t is Map:
        m = Map(v)
        op = rng.randrange(4)
        if op == 0 and m:
            del m[rng.randrange(len(m))]
        elif op == 1:
            k = rng.choice([rng.randrange(12), Text(rng.choice(INTERESTING_TEXT).encode()), -1])
            m.append((k, random_value(rng)))
        elif m:
            i = rng.randrange(len(m))
            m[i] = (m[i][0], tweak_value(rng, m[i][1], keys))
        return dedupe_map(m)
    return random_value(rng)


def dedupe_map(m: Map) -> Map:
    seen = {}
    for k, v in m:
        seen[encode(k)] = (k, v)
    return Map(seen.values())


def mutate_payload_tree(rng: random.Random, rec: Rec):
    """Change one field of the payload or of the body (or deeper)."""
    if rec.tree is None:
        return "payload-tree: no tree"
    rec.tree = Map(rec.tree)
    body = rec.field(8)
    if type(body) is Map and rng.random() < 0.6:
        body = Map(body)
        if body and rng.random() < 0.85:
            i = rng.randrange(len(body))
            k, v = body[i]
            if type(v) is Map and rng.random() < 0.5:  # escalation map, claims
                body[i] = (k, tweak_value(rng, v, KEYS))
            elif type(v) is list and v and type(v[0]) is Map and rng.random() < 0.5:  # signature lists
                lst = list(v)
                j = rng.randrange(len(lst))
                lst[j] = tweak_value(rng, lst[j], KEYS)
                body[i] = (k, lst)
            else:
                body[i] = (k, tweak_value(rng, v, KEYS))
            what = "body[%r]" % (k,)
        else:
            body = tweak_value(rng, body, KEYS)
            what = "body map"
        rec.set_field(8, dedupe_map(body) if type(body) is Map else body)
        return "payload-tree: " + what
    if rec.tree and rng.random() < 0.85:
        i = rng.randrange(len(rec.tree))
        k, v = rec.tree[i]
        rec.tree[i] = (k, tweak_value(rng, v, KEYS))
        return "payload-tree: field %r" % (k,)
    rec.tree = tweak_value(rng, rec.tree, KEYS)
    if type(rec.tree) is not Map:
        rec.tree = None
    return "payload-tree: payload map"


def byte_mutation(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    b = bytearray(data)
    op = rng.randrange(7)
    if not b:
        return bytes([rng.getrandbits(8)]), "insert into empty"
    i = rng.randrange(len(b))
    if op == 0:
        bit = rng.randrange(8)
        b[i] ^= 1 << bit
        return bytes(b), "flip bit %d of byte %d" % (bit, i)
    if op == 1:
        v = rng.getrandbits(8)
        b.insert(i, v)
        return bytes(b), "insert %02x at %d" % (v, i)
    if op == 2:
        del b[i]
        return bytes(b), "delete byte %d" % i
    if op == 3:
        v = rng.choice([0x00, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f, 0x20, 0x38, 0x3f, 0x40, 0x58, 0x5f, 0x60, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0, 0xd2, 0xd8, 0xe0, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfb, 0xfc, 0xff])
        b[i] = v
        return bytes(b), "set byte %d to %02x" % (i, v)
    if op == 4:
        n = rng.randint(1, 8)
        del b[i : i + n]
        return bytes(b), "delete %d bytes at %d" % (n, i)
    if op == 5:
        cut = rng.randrange(len(b))
        return bytes(b[:cut]), "truncate to %d" % cut
    n = rng.randint(1, 16)
    b[i:i] = b[i : i + n]
    return bytes(b), "duplicate %d bytes at %d" % (n, i)


def repair_stream(raws: list, touched: set, checkpoints=True) -> list:
    """Re-link parents after records changed, recompute checkpoints, re-sign."""
    mapping = {}
    out = []
    hashes = []
    for j, raw in enumerate(raws):
        rec = Rec(raw)
        old = hashlib.sha256(raw).digest()
        if rec.tree is not None:
            changed = j in touched
            parents = rec.field(2)
            if type(parents) is list and any(type(p) is bytes and p in mapping for p in parents):
                newp = sorted({mapping.get(p, p) if type(p) is bytes else p for p in parents}, key=lambda x: encode(x))
                rec.set_field(2, list(newp))
                changed = True
            kind = rec.field(1)
            body = rec.field(8)
            if kind == 9 and checkpoints and type(body) is Map:
                body = Map(body)
                fields = dict(body)
                if fields.get(0) != j or fields.get(1) != mth(hashes):
                    changed = True
                fields[0] = j
                fields[1] = mth(hashes)
                cos = fields.get(2)
                if type(cos) is list:
                    ch = checkpoint_challenge(j, fields[1])
                    newc = []
                    for e in cos:
                        if type(e) is Map and len(e) == 2 and type(e[0][1]) is bytes:
                            s = sign_with(e[0][1], ch)
                            e = Map([e[0], (e[1][0], s)]) if s else e
                        newc.append(e)
                    fields[2] = newc
                rec.set_field(8, Map(fields.items()))
            if kind == 3 and type(body) is Map and type(rec.field(2)) is list and len(rec.field(2)) == 1:
                esc = rec.field(2)[0]
                fields = dict(body)
                lst = fields.get(0)
                if type(lst) is list and type(esc) is bytes:
                    ch = approval_challenge(esc)
                    newl = []
                    for e in lst:
                        if type(e) is Map and len(e) == 2 and type(e[0][1]) is bytes:
                            s = sign_with(e[0][1], ch)
                            e = Map([e[0], (e[1][0], s)]) if s else e
                        newl.append(e)
                    if newl != lst:
                        changed = True
                    fields[0] = newl
                    rec.set_field(8, Map(fields.items()))
            if changed:
                rec.rebuild()
        new = hashlib.sha256(rec.raw).digest()
        if new != old:
            mapping[old] = new
        out.append(rec.raw)
        hashes.append(new)
    return out


def mutate_records(rng: random.Random, raws: list) -> tuple[list, list]:
    raws = list(raws)
    trail = []
    touched = set()
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if not raws:
            break
        op = rng.random()
        i = rng.randrange(len(raws))
        if op < 0.30:
            rec = Rec(raws[i])
            what = mutate_payload_tree(rng, rec)
            rec.rebuild()
            raws[i] = rec.raw
            touched.add(i)
            trail.append("record %d: %s" % (i, what))
        elif op < 0.45:
            rec = Rec(raws[i])
            if rec.payload is not None:
                rec.payload, what = byte_mutation(rng, rec.payload)
                rec.tree = None
                rec.rebuild()
                raws[i] = rec.raw
                trail.append("record %d payload bytes (re-signed): %s" % (i, what))
            else:
                raws[i], what = byte_mutation(rng, raws[i])
                trail.append("record %d bytes: %s" % (i, what))
        elif op < 0.60:
            raws[i], what = byte_mutation(rng, raws[i])
            trail.append("record %d bytes: %s" % (i, what))
        elif op < 0.67:
            rec = Rec(raws[i])
            if rec.protected is not None:
                rec.protected, what = byte_mutation(rng, rec.protected)
                rec.kid = rec.protected[6:] if len(rec.protected) == 38 else None
                rec.rebuild(resign=rng.random() < 0.5)
                raws[i] = rec.raw
                trail.append("record %d protected header: %s" % (i, what))
        elif op < 0.74:
            rec = Rec(raws[i])
            if rec.tree is not None:
                # re-sign with another test key (signer / role rules)
                other = rng.choice(list(KEYS))
                rec.protected = bytes.fromhex("a20127045820") + other
                rec.kid = other
                rec.rebuild()
                raws[i] = rec.raw
                touched.add(i)
                trail.append("record %d re-signed by %s" % (i, KEYS[other][0]))
        elif op < 0.80:
            del raws[i]
            trail.append("drop record %d" % i)
        elif op < 0.86:
            j = rng.randrange(len(raws))
            raws.insert(j, raws[i])
            trail.append("copy record %d to %d" % (i, j))
        elif op < 0.92 and len(raws) > 1:
            j = rng.randrange(len(raws))
            raws[i], raws[j] = raws[j], raws[i]
            trail.append("swap records %d and %d" % (i, j))
        else:
            rec = Rec(raws[i])
            if rec.tree is not None:
                # the same record again, re-encoded with an extension map
                ext = Map([(Text(b"x"), random_value(rng))])
                rec.set_field(9, ext)
                rec.rebuild()
                raws[i] = rec.raw
                touched.add(i)
                trail.append("record %d: extension map" % i)
    if rng.random() < 0.6:
        raws = repair_stream(raws, touched, checkpoints=rng.random() < 0.9)
        trail.append("repaired")
    return raws, trail


# ---------------------------------------------------------------- packs


def tar_header(name: bytes, size: int, typeflag=b"0", mtime=0, extra=None) -> bytes:
    h = bytearray(512)
    h[0 : len(name[:100])] = name[:100]
    h[100:108] = b"0000644\x00"
    h[108:116] = b"0000000\x00"
    h[116:124] = b"0000000\x00"
    h[124:136] = b"%011o\x00" % size if size < 8**11 else b"77777777777\x00"
    h[136:148] = b"%011o\x00" % mtime
    h[148:156] = b" " * 8
    h[156:157] = typeflag
    h[257:263] = b"ustar\x00"
    h[263:265] = b"00"
    h[329:337] = b"0000000\x00"
    h[337:345] = b"0000000\x00"
    if extra:
        for off, val in extra:
            h[off : off + len(val)] = val
    h[148:156] = b"%06o\x00 " % sum(h)
    return bytes(h)


def write_tar(entries: list, damage=None) -> bytes:
    out = bytearray()
    for e in entries:
        name, data = e[0], e[1]
        opts = e[2] if len(e) > 2 else {}
        out += tar_header(name, len(data), **opts)
        out += data
        out += bytes((-len(data)) % 512)
    out += bytes(1024)
    return bytes(out)


def read_tar(data: bytes) -> list | None:
    entries = []
    pos = 0
    while pos + 512 <= len(data):
        h = data[pos : pos + 512]
        if h == bytes(512):
            return entries
        name = h[:100].split(b"\x00", 1)[0]
        try:
            size = int(h[124:135], 8)
        except ValueError:
            return None
        entries.append((name, data[pos + 512 : pos + 512 + size]))
        pos += 512 + size + (-size) % 512
    return None


def split_segment(data: bytes) -> list:
    """A segment's records; in a partial pack, records and proof items alternate, and
    this returns the records only (see split_units)."""
    return [r for r, _ in split_units(data)]


def split_units(data: bytes) -> list:
    """(record, proof item) pairs of a segment; the item is b"" in a full pack."""
    from helm_verify.pack import frame_record

    out = []
    pos = 0
    while pos < len(data):
        try:
            end = frame_record(data, pos, len(data), len(data))
        except Exception:
            out.append((data[pos:], b""))
            break
        item = b""
        if end < len(data) and data[end] == 0x83:  # a partial pack's proof item
            try:
                d = Decoder(data, end, len(data))
                d.item(0)
                item = data[end : d.pos]
            except Exception:
                item = data[end:]
        out.append((data[pos:end], item))
        pos = end + len(item)
    return out


def manifest_for(entries: list, old_manifest: bytes) -> bytes | None:
    """Recompute and re-sign the manifest of a rebuilt pack (same kid)."""
    m = Rec(old_manifest)
    if m.tree is None or m.kid is None:
        return None
    records = []
    blobs = []
    withheld = []
    segments = 0
    for name, data in entries:
        if name.startswith(b"records/"):
            segments += 1
            records += split_segment(data)
        elif name.startswith(b"blobs/sha256/"):
            try:
                blobs.append(bytes.fromhex(name[13:].decode()))
            except ValueError:
                pass
        elif name == b"withheld.cbor":
            withheld = [data[i + 2 : i + 34] for i in range(0, len(data) - 33, 34)]
    hashes = [hashlib.sha256(r).digest() for r in records]
    per_kind = [0] * 9
    esc = 0
    streams = set()
    for r in records:
        rr = Rec(r)
        k = rr.field(1)
        if type(k) is int and 1 <= k <= 9:
            per_kind[k - 1] += 1
        b = rr.field(8)
        if k == 2 and type(b) is Map and dict(b).get(0) == 2:
            esc += 1
        s = rr.field(6)
        streams.add((rr.kid, bytes(s) if type(s) is Text else None))
    fields = dict(m.tree)
    fields.update({
        2: len(records), 3: mth(hashes), 4: hashes[-1] if hashes else bytes(32), 5: segments,
        6: len(blobs), 7: mth(sorted(blobs)), 8: len(withheld), 9: mth(withheld), 10: per_kind, 11: esc, 12: len(streams),
    })
    m.tree = Map(fields.items())
    m.rebuild()
    return m.raw


def mutate_pack(rng: random.Random, data: bytes) -> tuple[bytes, list]:
    trail = []
    raw = data
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    elif data[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(data)
        except Exception:
            pass
    entries = read_tar(raw)
    if entries is None or rng.random() < 0.15:
        out, what = byte_mutation(rng, data)
        return out, ["pack bytes: " + what]
    entries = [list(e) for e in entries]
    manifest = next((e[1] for e in entries if e[0] == b"manifest.cbor"), None)
    for _ in range(rng.choice([1, 1, 2])):
        op = rng.random()
        segs = [e for e in entries if e[0].startswith(b"records/")]
        if op < 0.40 and segs:
            seg = rng.choice(segs)
            units = split_units(seg[1])
            items = [i for _, i in units]
            if any(items) and rng.random() < 0.35:
                # A partial pack's proof item: bytes changed, or items swapped or dropped.
                k = rng.randrange(len(units))
                r = rng.random()
                if r < 0.6:
                    items[k], w = byte_mutation(rng, items[k])
                    trail.append("segment %s: proof item %d: %s" % (seg[0].decode(), k, w))
                elif r < 0.8 and len(units) > 1:
                    j = rng.randrange(len(units))
                    items[k], items[j] = items[j], items[k]
                    trail.append("segment %s: proof items %d and %d swapped" % (seg[0].decode(), k, j))
                else:
                    items[k] = b""
                    trail.append("segment %s: proof item %d dropped" % (seg[0].decode(), k))
                seg[1] = b"".join(r + i for (r, _), i in zip(units, items))
            else:
                recs, t = mutate_records(rng, [r for r, _ in units])
                # Items stay with the positions they had (a record moved keeps no proof).
                items += [b""] * max(0, len(recs) - len(items))
                seg[1] = b"".join(r + i for r, i in zip(recs, items))
                trail += ["segment %s: %s" % (seg[0].decode(), x) for x in t]
        elif op < 0.50 and segs:
            seg = rng.choice(segs)
            recs = [r + i for r, i in split_units(seg[1])]
            if len(recs) > 1:
                k = rng.randrange(1, len(recs))
                i = entries.index(seg)
                entries[i : i + 1] = [[seg[0], b"".join(recs[:k])], [b"records/%06d.cbor" % (int(seg[0][8:14]) + 1), b"".join(recs[k:])]]
                for j, e in enumerate(entries[i + 2 :], start=i + 2):
                    if e[0].startswith(b"records/"):
                        e[0] = b"records/%06d.cbor" % (int(e[0][8:14]) + 1)
                trail.append("split segment after %d records" % k)
        elif op < 0.58:
            blobs = [e for e in entries if e[0].startswith(b"blobs/")]
            if blobs:
                b = rng.choice(blobs)
                r = rng.random()
                if r < 0.4:
                    entries.remove(b)
                    trail.append("drop blob")
                elif r < 0.7:
                    b[1], w = byte_mutation(rng, b[1])
                    trail.append("blob content: " + w)
                else:
                    # withhold it instead
                    entries.remove(b)
                    wh = next((e for e in entries if e[0] == b"withheld.cbor"), None)
                    if wh is None:
                        continue
                    names = sorted({wh[1][i + 2 : i + 34] for i in range(0, len(wh[1]) - 33, 34)} | {bytes.fromhex(b[0][13:].decode())})
                    wh[1] = b"".join(b"\x58\x20" + n for n in names)
                    trail.append("withhold a present blob")
        elif op < 0.64:
            content = os.urandom(rng.randint(0, 40))
            name = b"blobs/sha256/" + hashlib.sha256(content).hexdigest().encode()
            entries.append([name, content])
            entries.sort(key=lambda e: (0 if e[0] == b"manifest.cbor" else 1 if e[0] == b"withheld.cbor" else 2 if e[0].startswith(b"blobs/") else 3, e[0]))
            trail.append("add unreferenced blob")
        elif op < 0.70:
            wh = next((e for e in entries if e[0] == b"withheld.cbor"), None)
            if wh is not None:
                wh[1], w = byte_mutation(rng, wh[1]) if wh[1] else (b"\x58\x20" + os.urandom(32), "add random name")
                trail.append("withheld: " + w)
        elif op < 0.78 and len(entries) > 1:
            i, j = rng.sample(range(len(entries)), 2)
            r = rng.random()
            if r < 0.4:
                entries[i], entries[j] = entries[j], entries[i]
                trail.append("swap entries %d and %d" % (i, j))
            elif r < 0.7:
                entries.insert(j, list(entries[i]))
                trail.append("copy entry %d to %d" % (i, j))
            else:
                del entries[i]
                trail.append("drop entry %d" % i)
        elif op < 0.84:
            e = rng.choice(entries)
            nm, w = byte_mutation(rng, e[0])
            e[0] = nm[:100]
            trail.append("rename entry: " + w)
        elif op < 0.90 and manifest is not None:
            m = Rec(manifest)
            if m.tree is not None:
                m.tree = Map(m.tree)
                i = rng.randrange(len(m.tree))
                k, v = m.tree[i]
                m.tree[i] = (k, tweak_value(rng, v, KEYS))
                if rng.random() < 0.3:
                    other = rng.choice(list(KEYS))
                    m.protected = bytes.fromhex("a20127045820") + other
                    m.kid = other
                    trail.append("manifest signed by %s" % KEYS[other][0])
                m.rebuild()
                for e in entries:
                    if e[0] == b"manifest.cbor":
                        e[1] = m.raw
                trail.append("manifest key %r changed (no recompute)" % (k,))
                manifest = None  # do not recompute
        else:
            e = rng.choice(entries)
            e[1], w = byte_mutation(rng, e[1])
            trail.append("entry %s data: %s" % (e[0][:40].decode(errors="replace"), w))
    if manifest is not None and rng.random() < 0.8:
        new = manifest_for([tuple(e) for e in entries], manifest)
        if new is not None:
            for e in entries:
                if e[0] == b"manifest.cbor":
                    e[1] = new
            trail.append("manifest recomputed and re-signed")
    # tar-level damage
    r = rng.random()
    tar_entries = [tuple(e) for e in entries]
    if r < 0.08 and tar_entries:
        i = rng.randrange(len(tar_entries))
        n, d = tar_entries[i][:2]
        opts = rng.choice([{"typeflag": rng.choice([b"1", b"2", b"5", b"x", b"g", b"L", b"\x00", b"7"])}, {"mtime": rng.randint(1, 10**9)},
                           {"extra": [(rng.choice([265, 297, 345, 500, 108, 116, 329, 101, 157]), bytes([rng.randint(1, 127)]))]}])
        tar_entries[i] = (n, d, opts)
        trail.append("tar header %d: %r" % (i, opts))
    out = write_tar(tar_entries)
    if rng.random() < 0.08:
        out, w = byte_mutation(rng, out)
        trail.append("tar bytes: " + w)
    if rng.random() < 0.05:
        out += bytes(512 * rng.randint(1, 3)) if rng.random() < 0.5 else os.urandom(rng.randint(1, 600))
        trail.append("appended bytes")
    r = rng.random()
    if r < 0.12:
        out = gzip.compress(out, compresslevel=6, mtime=0)
        trail.append("gzip")
    elif r < 0.24:
        import zstandard
        out = zstandard.ZstdCompressor(level=1).compress(out)
        trail.append("zstd")
    if r < 0.24 and rng.random() < 0.3:
        out, w = byte_mutation(rng, out)
        trail.append("compressed bytes: " + w)
    return out, trail


# ---------------------------------------------------------------- running


def trust_root(anchors: list) -> bytes:
    return json.dumps({"format": "helm-trust-root/1", "anchors": [{"name": "a%d" % i, "key": "ed25519:" + a} for i, a in enumerate(anchors)]}).encode()


def cbor_seq(raws: list) -> bytes:
    return b"".join(encode_head(2, len(r)) + r for r in raws)


def collect(p) -> dict:
    out, err = p.communicate()
    res = {}
    for line in out.decode(errors="replace").splitlines():
        try:
            r = json.loads(line)
            res[r["id"]] = r.get("output", {"internal_error": r.get("internal_error")})
        except (json.JSONDecodeError, KeyError):
            pass
    if p.returncode != 0 and not res:
        sys.stderr.write("adapter failed: %s\n" % err.decode(errors="replace")[-2000:])
    return res


def verdict(kind: str, out) -> tuple:
    if not isinstance(out, dict) or "result" not in out:
        return ("internal", str(out)[:200])
    if out["result"] == "accept":
        return ("accept", out.get("count", out.get("records")), out.get("root"))
    if kind == "records":
        return ("reject", out.get("error"), out.get("index"))
    # packs: the index is compared only for record errors, where both report it
    return ("reject", out.get("error"), out.get("index"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--batch", type=int, default=300)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--python", default=os.path.join(HERE, "helm-verify-conformance"))
    ap.add_argument("--rust", default="cargo run -q --release -p airgap-cli --bin helm-conformance-adapter --")
    ap.add_argument("--findings", default=os.path.join(HERE, "findings"))
    ap.add_argument("--max-per-signature", type=int, default=3, help="findings kept per distinct (python, rust) verdict pair")
    ap.add_argument("--packs", type=float, default=0.3, help="share of pack cases")
    ap.add_argument("--variants", type=float, default=0.25,
                    help="share of plain pack mutants also checked wrapped in gzip and zstd (same verdict expected)")
    ap.add_argument("--python-order", choices=["spec", "reference"],
                    help="HELM_VERIFY_CBOR_ORDER for the Python side (reference: look past the known spec conflict)")
    args = ap.parse_args(argv)

    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    with open(os.path.join(VECTORS, "index.json")) as f:
        index = json.load(f)
    rec_seeds = []
    for e in index["records"]:
        with open(os.path.join(VECTORS, "records", e["id"] + ".json")) as f:
            v = json.load(f)
        weight = 4 if e["id"].startswith("valid/") else 1
        rec_seeds += [(e["id"], v["anchors"], [bytes.fromhex(r) for r in v["records"]])] * weight
    with open(os.path.join(VECTORS, "packs", "index.json")) as f:
        packs = json.load(f)["packs"]
    pack_seeds = []
    for e in packs:
        with open(os.path.join(VECTORS, "packs", e["file"]), "rb") as f:
            data = f.read()
        weight = 4 if e["id"].startswith("valid/") else 1
        pack_seeds += [(e["id"], e["anchors"], data)] * weight

    os.makedirs(args.findings, exist_ok=True)
    py_cmd = shlex.split(args.python)
    rs_cmd = shlex.split(args.rust)
    signatures = {}
    for name in os.listdir(args.findings):
        if name.endswith(".json"):
            try:
                with open(os.path.join(args.findings, name)) as f:
                    sig = tuple(json.load(f)["signature"])
                signatures[sig] = signatures.get(sig, 0) + 1
            except (OSError, ValueError, KeyError):
                pass
    start = time.time()
    execs = 0
    disagreements = 0
    allowed = {}
    kept = 0
    stats = {"records": 0, "packs": 0, "pack-variants": 0}
    outcomes = {}
    py_env = dict(os.environ)
    if args.python_order:
        py_env["HELM_VERIFY_CBOR_ORDER"] = args.python_order

    def keep(kind, sid, anchors, mutant, trail, py_out, rs_out, sig, batch_no, extra=None):
        nonlocal kept
        tsig = tuple(sig)
        if signatures.get(tsig, 0) >= args.max_per_signature:
            return
        signatures[tsig] = signatures.get(tsig, 0) + 1
        kept += 1
        if kind == "records":
            body = {"anchors": anchors, "records": [r.hex() for r in mutant]}
        else:
            body = {"anchors": anchors, "pack": mutant.hex()}
        finding = {"kind": kind, "seed_vector": sid, "mutations": trail, "python": py_out, "rust": rs_out,
                   "signature": sig, "fuzz_seed": seed, "batch": batch_no, **(extra or {}), **body}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        with open(os.path.join(args.findings, "%s-%s.json" % (kind, digest)), "w") as f:
            json.dump(finding, f, indent=1)
            f.write("\n")

    def allowed_class(kind, pv, rv, mutant) -> str | None:
        """Disagreements the specification allows (see README: known classes)."""
        if pv[0] == rv[0] == "reject":
            codes = {pv[1], rv[1]}
            if codes & {"CAPACITY_EXCEEDED", "PACK_CAPACITY_EXCEEDED"}:
                return "capacity (tables sized from the manifest's unauthenticated counts)"
            if kind == "packs" and "PACK_TRANSPORT_INVALID" in codes and mutant[:2] in (b"\x1f\x8b", b"\x28\xb5"):
                return "corrupt wrapper: transport error vs error in bytes decompressed before it"
        return None

    with tempfile.TemporaryDirectory(prefix="helm-fuzz-") as tmp:
        batch_no = 0
        while time.time() - start < args.seconds:
            batch_no += 1
            cases = []
            lines = []

            def add(kind, sid, anchors, mutant, trail, parent=None):
                i = len(cases)
                af = os.path.join(tmp, "%d.anchors.json" % i)
                with open(af, "wb") as f:
                    f.write(trust_root(anchors))
                if kind == "records":
                    rf = os.path.join(tmp, "%d.records.cbor" % i)
                    with open(rf, "wb") as f:
                        f.write(cbor_seq(mutant))
                    argv_ = ["verify-records", "--anchors", af, "--records", rf]
                else:
                    pf = os.path.join(tmp, "%d.pack" % i)
                    with open(pf, "wb") as f:
                        f.write(mutant)
                    argv_ = ["verify-pack", "--trust-root", af, "--pack", pf]
                cases.append((kind, sid, anchors, mutant, trail, parent))
                lines.append(json.dumps({"id": i, "argv": argv_}))
                return i

            for _ in range(args.batch):
                if rng.random() < args.packs:
                    sid, anchors, data = rng.choice(pack_seeds)
                    try:
                        mutant, trail = mutate_pack(rng, data)
                    except Exception as e:  # a mutator bug must not stop the run
                        mutant, w = byte_mutation(rng, data)
                        trail = ["mutator failed (%s: %s); pack bytes: %s" % (type(e).__name__, e, w)]
                    parent = add("packs", sid, anchors, mutant, trail)
                    plain = mutant[:4] != b"\x28\xb5\x2f\xfd" and mutant[:2] != b"\x1f\x8b"
                    if plain and rng.random() < args.variants:
                        import zstandard
                        add("packs", sid, anchors, gzip.compress(mutant, compresslevel=6, mtime=0), trail + ["variant: gzip"], parent)
                        add("packs", sid, anchors, zstandard.ZstdCompressor(level=1).compress(mutant), trail + ["variant: zstd"], parent)
                else:
                    sid, anchors, raws = rng.choice(rec_seeds)
                    try:
                        mutant, trail = mutate_records(rng, raws)
                    except Exception as e:
                        mutant, trail = list(raws), ["mutator failed (%s: %s); unchanged" % (type(e).__name__, e)]
                    add("records", sid, anchors, mutant, trail)
            req = os.path.join(tmp, "batch.jsonl")
            with open(req, "w") as f:
                f.write("\n".join(lines) + "\n")
            pp = subprocess.Popen(py_cmd + ["batch", "--input", req], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=py_env)
            rp = subprocess.Popen(rs_cmd + ["batch", "--input", req], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
            py_res = collect(pp)
            rs_res = collect(rp)
            for i, (kind, sid, anchors, mutant, trail, parent) in enumerate(cases):
                execs += 1
                stats["pack-variants" if parent is not None else kind] += 1
                pv = verdict(kind, py_res.get(i))
                rv = verdict(kind, rs_res.get(i))
                key = (kind,) + tuple(str(x) for x in rv[:2])
                outcomes[key] = outcomes.get(key, 0) + 1
                if parent is not None:
                    # metamorphic: the same tar raw and wrapped must get the same verdict
                    for who, res in (("rust", rs_res), ("python", py_res)):
                        a = verdict(kind, res.get(parent))
                        b = verdict(kind, res.get(i))
                        if a != b:
                            disagreements += 1
                            keep("packs-wrapper", sid, anchors, mutant, trail, py_res.get(i), rs_res.get(i),
                                 ["wrapper-consistency", who, str(a[:2]), str(b[:2])], batch_no,
                                 {"unwrapped_verdict": res.get(parent), "implementation": who})
                if pv == rv:
                    continue
                cls = allowed_class(kind, pv, rv, mutant)
                if cls:
                    allowed[cls] = allowed.get(cls, 0) + 1
                    continue
                disagreements += 1
                sig = [kind, str(pv[:2]), str(rv[:2])]
                if pv[0] == rv[0] == "reject" and pv[1] == rv[1]:
                    sig.append("index")
                keep(kind, sid, anchors, mutant, trail, py_res.get(i), rs_res.get(i), sig, batch_no)
            elapsed = time.time() - start
            sys.stderr.write("\r%.0fs: %d executions (%.0f/s), %d disagreements, %d kept, %d allowed   "
                             % (elapsed, execs, execs / max(elapsed, 1e-9), disagreements, kept, sum(allowed.values())))
    sys.stderr.write("\n")
    summary = {
        "seed": seed,
        "seconds": round(time.time() - start, 1),
        "executions": execs,
        "by_kind": stats,
        "disagreements": disagreements,
        "findings_kept": kept,
        "allowed_divergences": allowed,
        "python_cbor_order": args.python_order or os.environ.get("HELM_VERIFY_CBOR_ORDER", "spec"),
        "rust_outcomes": {" ".join(k): v for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1])},
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
