"""The helm-conformance/1 protocol (spec/conformance.md) for this implementation."""

import argparse
import json
import sys
import traceback

from . import ed25519
from .errors import VerifyError
from .pack import verify_pack_bytes
from .trustroot import parse_trust_root
from .verifier import Verifier

PROTOCOL = "helm-conformance/1"
COMMANDS = ["verify-records", "verify-pack", "verify-signature", "capabilities", "batch"]
LEVELS = ["L1", "L2", "L3"]


class UsageError(Exception):
    pass


def read_record_sequence(data: bytes) -> list[bytes]:
    """RECORDS.cbor: a CBOR sequence of byte strings, each one record's exact bytes."""
    out = []
    pos = 0
    while pos < len(data):
        b = data[pos]
        if b >> 5 != 2 or (b & 0x1F) > 27:
            raise UsageError("RECORDS file: item %d is not a definite-length byte string" % len(out))
        ai = b & 0x1F
        if ai < 24:
            n, pos = ai, pos + 1
        else:
            k = 1 << (ai - 24)
            if pos + 1 + k > len(data):
                raise UsageError("RECORDS file: truncated head")
            n = int.from_bytes(data[pos + 1 : pos + 1 + k], "big")
            pos += 1 + k
        if pos + n > len(data):
            raise UsageError("RECORDS file: truncated byte string")
        out.append(data[pos : pos + n])
        pos += n
    return out


def verify_records(anchors: list[bytes], records: list[bytes]) -> dict:
    v = Verifier(anchors)
    try:
        for r in records:
            v.push(r)
        count, root = v.finish()
    except VerifyError as e:
        return {"result": "reject", "error": e.code, "index": e.index}
    return {"result": "accept", "count": count, "root": root.hex()}


def verify_pack(anchors: list[bytes], data: bytes) -> dict:
    try:
        res = verify_pack_bytes(data, anchors)
    except VerifyError as e:
        out = {"result": "reject", "error": e.code}
        if e.index is not None:
            out["index"] = e.index
        return out
    return {"result": "accept", "records": res.records, "root": res.root.hex()}


def verify_signature(key_hex: str, sig_hex: str, msg: bytes) -> dict:
    try:
        key = bytes.fromhex(key_hex)
        sig = bytes.fromhex(sig_hex)
    except ValueError:
        raise UsageError("--key and --signature must be hex")
    return {"result": "accept" if ed25519.verify(key, msg, sig) else "reject"}


def capabilities() -> dict:
    return {
        "protocol": PROTOCOL,
        "implementation": "helm-verify-python",
        "levels": LEVELS,
        "commands": COMMANDS,
    }


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="helm-verify-conformance")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("verify-records")
    r.add_argument("--anchors", required=True)
    r.add_argument("--records", required=True)
    k = sub.add_parser("verify-pack")
    k.add_argument("--trust-root", required=True)
    k.add_argument("--pack", required=True)
    s = sub.add_parser("verify-signature")
    s.add_argument("--key", required=True)
    s.add_argument("--signature", required=True)
    s.add_argument("--message-file", required=True)
    sub.add_parser("capabilities")
    b = sub.add_parser("batch")
    b.add_argument("--input", default="-")
    return p




def run(argv: list[str]) -> dict:
    """One protocol command; returns the JSON object. Raises on internal failure."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        raise UsageError("bad arguments: %r" % (argv,))
    if args.command == "verify-records":
        anchors = parse_trust_root(_read(args.anchors).decode("utf-8"))
        return verify_records(anchors, read_record_sequence(_read(args.records)))
    if args.command == "verify-pack":
        anchors = parse_trust_root(_read(args.trust_root).decode("utf-8"))
        return verify_pack(anchors, _read(args.pack))
    if args.command == "verify-signature":
        return verify_signature(args.key, args.signature, _read(args.message_file))
    if args.command == "capabilities":
        return capabilities()
    raise UsageError("batch cannot be nested")


def run_batch(stream_in, stream_out) -> None:
    """Each input line: {"id": ..., "argv": [...]}. Each output line:
    {"id": ..., "output": {...}} or {"id": ..., "internal_error": "..."}."""
    for line in stream_in:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        try:
            if req["argv"][:1] == ["batch"]:
                raise UsageError("batch cannot be nested")
            resp = {"id": req.get("id"), "output": run(req["argv"])}
        except Exception as e:  # an internal failure of one case
            resp = {"id": req.get("id"), "internal_error": "%s: %s" % (type(e).__name__, e)}
        stream_out.write(json.dumps(resp) + "\n")
        stream_out.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["batch"]:
            args = _parser().parse_args(argv)
            if args.input == "-":
                run_batch(sys.stdin, sys.stdout)
            else:
                with open(args.input) as f:
                    run_batch(f, sys.stdout)
            return 0
        out = run(argv)
    except Exception as e:
        sys.stderr.write("helm-verify-conformance: internal failure: %s: %s\n" % (type(e).__name__, e))
        if not isinstance(e, UsageError):
            traceback.print_exc(file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(out) + "\n")
    return 0
