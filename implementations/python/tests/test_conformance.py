import json
import os
import subprocess
import sys
import textwrap

from helm_verify.conformance import read_record_sequence
from tests.helpers import IMPL

CLI = os.path.join(IMPL, "helm-verify-conformance")
RUNNER = os.path.join(IMPL, "run_conformance.py")


def call(*args):
    p = subprocess.run([sys.executable, CLI, *args], capture_output=True)
    return p.returncode, (json.loads(p.stdout) if p.returncode == 0 else p.stderr.decode())


def test_capabilities():
    rc, out = call("capabilities")
    assert rc == 0
    assert out["protocol"] == "helm-conformance/1"
    assert set(out["levels"]) == {"L1", "L2", "L3"}


def test_signature_and_internal_failures(tmp_path):
    msg = tmp_path / "m"
    msg.write_bytes(b"")
    rc, out = call("verify-signature", "--key", "00" * 32, "--signature", "00" * 64, "--message-file", str(msg))
    assert (rc, out) == (0, {"result": "reject"})
    rc, out = call("verify-signature", "--key", "00" * 3, "--signature", "00" * 64, "--message-file", str(msg))
    assert (rc, out) == (0, {"result": "reject"})
    rc, _ = call("verify-signature", "--key", "zz", "--signature", "00", "--message-file", str(msg))
    assert rc != 0
    rc, _ = call("verify-records", "--anchors", str(tmp_path / "missing"), "--records", str(msg))
    assert rc != 0


def test_record_sequence_format():
    assert read_record_sequence(b"") == []
    assert read_record_sequence(b"\x41\x00\x58\x18" + bytes(24)) == [b"\x00", bytes(24)]


def write_fake(tmp_path, body: str):
    p = tmp_path / "fake.py"
    p.write_text(textwrap.dedent(body))
    return "%s %s" % (sys.executable, p)


def test_runner_expected_failures(tmp_path):
    # an implementation that claims L1 only and rejects every signature
    fake = write_fake(tmp_path, """
        import json, sys
        def one(argv):
            if argv[0] == "verify-signature":
                return {"result": "reject"}
            raise SystemExit(3)
        if sys.argv[1] == "capabilities":
            print(json.dumps({"protocol": "helm-conformance/1", "levels": ["L1"],
                              "commands": ["verify-signature", "batch"]}))
        elif sys.argv[1] == "batch":
            for line in open(sys.argv[3]):
                req = json.loads(line)
                try:
                    print(json.dumps({"id": req["id"], "output": one(req["argv"])}))
                except SystemExit:
                    print(json.dumps({"id": req["id"], "internal_error": "not implemented"}))
        else:
            print(json.dumps(one(sys.argv[1:])))
    """)
    verdicts = json.load(open(os.path.join(IMPL, "..", "..", "test-vectors", "ed25519", "strict-verdicts.json")))
    accepted = [c["number"] for c in verdicts if c["expect"] == "accept"]
    xf = tmp_path / "xfail.txt"
    xf.write_text("# known\n" + "\n".join("ed25519/%d  # accept" % n for n in accepted) + "\nrecords/no-such-vector\n")
    p = subprocess.run([sys.executable, RUNNER, "--implementation", fake, "--expected-failures", str(xf),
                        "--json"], capture_output=True)
    report = json.loads(p.stdout)
    l1 = report["levels"]["L1"]
    assert l1["xfail"] == 43 and l1["pass"] == 871
    assert l1["fail"] == 59  # record vectors: an internal failure each
    assert report["levels"]["L2"]["skip"] == 57
    assert report["unknown_expected_failures"] == ["records/no-such-vector"]
    assert p.returncode == 1
    # a listed vector that passes is an unexpected pass
    xf.write_text("ed25519/0\n")
    p = subprocess.run([sys.executable, RUNNER, "--implementation", fake, "--expected-failures", str(xf),
                        "--level", "L1", "--json"], capture_output=True)
    report = json.loads(p.stdout)
    assert report["levels"]["L1"]["xpass"] == 1
    assert p.returncode == 1


def test_runner_against_this_implementation():
    p = subprocess.run([sys.executable, RUNNER, "--implementation", "%s %s" % (sys.executable, CLI), "--json"],
                       capture_output=True)
    report = json.loads(p.stdout)
    assert p.returncode == 0, [v for v in report["vectors"] if v["status"] != "PASS"]
    assert report["levels"]["L1"]["pass"] == report["levels"]["L1"]["total"]
    assert report["levels"]["L2"]["pass"] == report["levels"]["L2"]["total"]
    assert report["levels"]["L3"]["pass"] == report["levels"]["L3"]["total"]


def test_runner_single_calls_agree_with_batch(tmp_path):
    # one process per vector: the same results (L2 only, to keep it short)
    p = subprocess.run([sys.executable, RUNNER, "--implementation", "%s %s" % (sys.executable, CLI), "--json",
                        "--level", "L2", "--no-batch"], capture_output=True)
    report = json.loads(p.stdout)
    assert p.returncode == 0
    assert report["levels"]["L2"]["pass"] == report["levels"]["L2"]["total"] == 57
