#!/usr/bin/env python3
"""Conformance runner for the helm-conformance/1 protocol (spec/conformance.md).

    run_conformance.py --implementation CMD [--level L] [--expected-failures FILE]
                       [--json] [--vectors DIR] [--no-batch] [--verbose]

Walks test-vectors/index.json (record vectors), test-vectors/packs/index.json (pack
vectors) and test-vectors/ed25519/strict-verdicts.json (signature cases), derives each
vector's input files, calls CMD per the protocol, compares the JSON it prints with the
expected outcome and reports pass/fail per vector and per level.

Exit status: 0 when every selected vector passed (or failed and is listed as an
expected failure, and no listed vector passed); 1 otherwise; 2 when the runner itself
cannot run (bad arguments, unreadable vector files, CMD does not speak the protocol).

Standard library only; it imports nothing from the implementation it tests.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

PROTOCOL = "helm-conformance/1"
LEVELS = ("L1", "L2", "L3")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VECTORS = os.path.normpath(os.path.join(HERE, "..", "..", "test-vectors"))
TIMEOUT = 120  # seconds per call


class RunnerError(Exception):
    pass


# ---------------------------------------------------------------- input files

def trust_root_json(anchors_hex: list) -> str:
    """A trust-root file (spec/evidencepack.md §8) for a vector's anchors."""
    return json.dumps({
        "format": "helm-trust-root/1",
        "anchors": [{"name": "anchor-%d" % i, "key": "ed25519:" + a.lower()} for i, a in enumerate(anchors_hex)],
    }, indent=2) + "\n"


def cbor_bstr(data: bytes) -> bytes:
    """A CBOR byte string with the shortest head."""
    n = len(data)
    if n < 24:
        head = bytes([0x40 | n])
    elif n <= 0xFF:
        head = bytes([0x58, n])
    elif n <= 0xFFFF:
        head = b"\x59" + n.to_bytes(2, "big")
    elif n <= 0xFFFFFFFF:
        head = b"\x5a" + n.to_bytes(4, "big")
    else:
        head = b"\x5b" + n.to_bytes(8, "big")
    return head + data


def record_sequence(records_hex: list) -> bytes:
    """RECORDS.cbor: a CBOR sequence (RFC 8742) of byte strings, one per record."""
    return b"".join(cbor_bstr(bytes.fromhex(r)) for r in records_hex)


# ---------------------------------------------------------------- vectors

class Vector:
    __slots__ = ("id", "level", "kind", "argv", "files", "expect")

    def __init__(self, vid, level, kind, argv, files, expect):
        self.id = vid
        self.level = level
        self.kind = kind  # records, packs, ed25519
        self.argv = argv  # protocol argv, with {name} placeholders for files
        self.files = files  # name -> bytes
        self.expect = expect


def load_vectors(vdir: str) -> list:
    out = []
    try:
        with open(os.path.join(vdir, "index.json")) as f:
            index = json.load(f)
        for entry in index["records"]:
            with open(os.path.join(vdir, "records", entry["id"] + ".json")) as f:
                v = json.load(f)
            for a in v["anchors"]:
                if len(bytes.fromhex(a)) != 32:
                    raise RunnerError("%s: anchor is not 32 bytes" % entry["id"])
            out.append(Vector(
                "records/" + entry["id"], entry["level"], "records",
                ["verify-records", "--anchors", "{anchors}", "--records", "{records}"],
                {"anchors": trust_root_json(v["anchors"]).encode(), "records": record_sequence(v["records"])},
                entry["expect"],
            ))
        packs_path = os.path.join(vdir, index.get("packs", "packs/index.json"))
        with open(packs_path) as f:
            packs = json.load(f)
        pdir = os.path.dirname(packs_path)
        for entry in packs["packs"]:
            with open(os.path.join(pdir, entry["file"]), "rb") as f:
                pack = f.read()
            out.append(Vector(
                "packs/" + entry["id"], entry["level"], "packs",
                ["verify-pack", "--trust-root", "{anchors}", "--pack", "{pack}"],
                {"anchors": trust_root_json(entry["anchors"]).encode(), "pack": pack},
                entry["expect"],
            ))
        with open(os.path.join(vdir, index.get("ed25519", "ed25519/strict-verdicts.json"))) as f:
            cases = json.load(f)
        for c in cases:
            out.append(Vector(
                "ed25519/%d" % c["number"], "L1", "ed25519",
                ["verify-signature", "--key", c["key"], "--signature", c["sig"], "--message-file", "{message}"],
                {"message": c["msg"].encode("utf-8")},
                {"result": c["expect"]},
            ))
    except (OSError, KeyError, ValueError) as e:
        raise RunnerError("cannot read the vectors in %s: %s" % (vdir, e))
    return out


def compare(v: Vector, got) -> str | None:
    """None when `got` is the expected outcome, else a short reason."""
    if not isinstance(got, dict):
        return "output is not a JSON object"
    exp = v.expect
    if v.kind == "records":
        keys = ("result", "count", "root") if exp["result"] == "accept" else ("result", "error", "index")
    elif v.kind == "packs":
        keys = ("result", "records", "root") if exp["result"] == "accept" else ("result", "error")
    else:
        keys = ("result",)
    want = {k: exp[k] for k in keys}
    have = {k: got.get(k) for k in keys}
    if want == have:
        return None
    return "expected %s, got %s" % (json.dumps(want, sort_keys=True), json.dumps(have, sort_keys=True))


# ---------------------------------------------------------------- calling CMD

class Implementation:
    def __init__(self, cmd: str, use_batch: bool, workdir: str):
        self.cmd = shlex.split(cmd)
        self.workdir = workdir
        caps = self.call_one(["capabilities"])
        if not isinstance(caps, dict) or caps.get("protocol") != PROTOCOL:
            raise RunnerError("%s does not speak %s: capabilities gave %r" % (cmd, PROTOCOL, caps))
        self.caps = caps
        self.levels = [lv for lv in caps.get("levels", []) if lv in LEVELS]
        self.batch = use_batch and "batch" in caps.get("commands", [])

    def call_one(self, argv: list):
        try:
            p = subprocess.run(self.cmd + argv, capture_output=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return {"__internal__": "timed out after %d s" % TIMEOUT}
        except OSError as e:
            raise RunnerError("cannot run %s: %s" % (self.cmd, e))
        if p.returncode != 0:
            return {"__internal__": "exit status %d: %s" % (p.returncode, p.stderr.decode(errors="replace").strip()[-500:])}
        try:
            return json.loads(p.stdout.decode("utf-8").strip())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return {"__internal__": "stdout is not one JSON object: %s" % e}

    def materialise(self, i: int, v: Vector) -> list:
        paths = {}
        for name, data in v.files.items():
            path = os.path.join(self.workdir, "%d-%s" % (i, name))
            with open(path, "wb") as f:
                f.write(data)
            paths[name] = path
        return [a.format(**paths) if a.startswith("{") else a for a in v.argv]

    def run_all(self, vectors: list) -> list:
        argvs = [self.materialise(i, v) for i, v in enumerate(vectors)]
        if not self.batch:
            return [self.call_one(a) for a in argvs]
        req = os.path.join(self.workdir, "batch.jsonl")
        with open(req, "w") as f:
            for i, a in enumerate(argvs):
                f.write(json.dumps({"id": i, "argv": a}) + "\n")
        try:
            p = subprocess.run(self.cmd + ["batch", "--input", req], capture_output=True, timeout=TIMEOUT * 10)
        except subprocess.TimeoutExpired:
            raise RunnerError("batch call timed out")
        results = [{"__internal__": "no batch response"} for _ in argvs]
        for line in p.stdout.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                i = r["id"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if isinstance(i, int) and 0 <= i < len(results):
                results[i] = r["output"] if "output" in r else {"__internal__": str(r.get("internal_error"))}
        if p.returncode != 0:
            for i, r in enumerate(results):
                if r == {"__internal__": "no batch response"}:
                    results[i] = {"__internal__": "batch exit status %d" % p.returncode}
        return results


# ---------------------------------------------------------------- main

def read_expected_failures(path: str) -> set:
    out = set()
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                out.add(line)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--implementation", required=True, help="the command to run (split like a shell would)")
    ap.add_argument("--level", choices=LEVELS, action="append",
                    help="run only vectors of this level (repeatable; default: every level the implementation claims)")
    ap.add_argument("--expected-failures", help="file of vector ids expected to fail (one per line, # comments)")
    ap.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    ap.add_argument("--vectors", default=DEFAULT_VECTORS, help="the test-vectors directory")
    ap.add_argument("--no-batch", action="store_true", help="one process per vector even if CMD offers batch")
    ap.add_argument("--verbose", "-v", action="store_true", help="print passing vectors too")
    args = ap.parse_args(argv)

    try:
        vectors = load_vectors(args.vectors)
        xfail = read_expected_failures(args.expected_failures) if args.expected_failures else set()
        known = {v.id for v in vectors}
        unknown_xfail = sorted(xfail - known)
        with tempfile.TemporaryDirectory(prefix="helm-conformance-") as tmp:
            impl = Implementation(args.implementation, not args.no_batch, tmp)
            wanted = set(args.level) if args.level else set(LEVELS)
            selected = [v for v in vectors if v.level in wanted and v.level in impl.levels]
            skipped = [v for v in vectors if v.level in wanted and v.level not in impl.levels]
            outputs = impl.run_all(selected)
    except RunnerError as e:
        sys.stderr.write("run_conformance: %s\n" % e)
        return 2

    results = []
    for v, got in zip(selected, outputs):
        if isinstance(got, dict) and "__internal__" in got:
            reason = "internal failure: " + got["__internal__"]
        else:
            reason = compare(v, got)
        passed = reason is None
        if v.id in xfail:
            status = "XPASS" if passed else "XFAIL"
        else:
            status = "PASS" if passed else "FAIL"
        results.append({"id": v.id, "level": v.level, "status": status, "reason": reason, "output": got})
    for v in skipped:
        results.append({"id": v.id, "level": v.level, "status": "SKIP", "reason": "level not claimed", "output": None})

    per_level = {}
    for lv in LEVELS:
        rs = [r for r in results if r["level"] == lv]
        if not rs:
            continue
        per_level[lv] = {s.lower(): sum(1 for r in rs if r["status"] == s) for s in ("PASS", "FAIL", "XFAIL", "XPASS", "SKIP")}
        per_level[lv]["total"] = len(rs)
    bad = [r for r in results if r["status"] in ("FAIL", "XPASS")]
    ok = not bad

    if args.json:
        json.dump({
            "protocol": PROTOCOL,
            "implementation": args.implementation,
            "capabilities": impl.caps,
            "ok": ok,
            "levels": per_level,
            "unknown_expected_failures": unknown_xfail,
            "vectors": [{k: r[k] for k in ("id", "level", "status", "reason")} for r in results],
        }, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in results:
            if r["status"] == "PASS" and not args.verbose:
                continue
            line = "%-5s %s %s" % (r["status"], r["level"], r["id"])
            if r["reason"] and r["status"] != "SKIP":
                line += ": " + r["reason"]
            print(line)
        for lv, c in per_level.items():
            print("%s: %d passed, %d failed, %d expected failures, %d unexpected passes, %d skipped (of %d)"
                  % (lv, c["pass"], c["fail"], c["xfail"], c["xpass"], c["skip"], c["total"]))
        for x in unknown_xfail:
            print("note: expected failure %s names no vector" % x)
        total_pass = sum(c["pass"] for c in per_level.values())
        total_fail = sum(c["fail"] + c["xpass"] for c in per_level.values())
        print("%d passed, %d failed" % (total_pass, total_fail))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
