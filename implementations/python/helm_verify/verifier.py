"""The streaming verifier of spec/verification.md §§2-8."""

from dataclasses import dataclass, field

from . import ed25519
from . import registries as R
from .cbor import encode_head
from .errors import DecodeError, VerifyError
from .merkle import MerkleAccumulator
from .record import Escalation, Record, decode_record


class VerifierSetupError(Exception):
    """An anchor that is not admissible (verification.md §2.1): not a verdict."""


@dataclass
class KeyEntry:
    key: bytes
    anchor: bool
    roles: frozenset
    retired: bool = False
    last: int | None = None
    last_time: int = 0


@dataclass
class RecordInfo:
    position: int
    kind: int
    lamport: int
    verdict: int | None = None
    intent: bytes | None = None  # hash of the INTENT (INTENT, DECISION, APPROVAL)
    # partial streams (verification.md §10)
    extra: bool = False  # not selected, not a TRUST_EVENT, not the checkpoint
    needed: bool = False  # named as a parent by a DECISION/APPROVAL/EFFECT, or as a cut-off


@dataclass
class Partial:
    """What a partial stream is proven against (verification.md §10)."""
    tree_size: int
    tree_root: bytes
    session: bytes | None = None
    since: int | None = None
    until: int | None = None

    def selects(self, rec) -> bool:
        return ((self.session is None or rec.session == self.session)
                and (self.since is None or rec.time >= self.since)
                and (self.until is None or rec.time <= self.until))

    def strict_session(self, session: bytes) -> bool:
        return self.since is None and self.until is None and self.session == session


@dataclass
class IntentInfo:
    tool: bytes
    call_kind: int
    args: bytes
    final: bool = False
    escalation: Escalation | None = None  # set when escalated
    approved: bool = False
    used: bool = False


def approval_challenge(escalate_hash: bytes) -> bytes:
    """RF §8.1."""
    return b"\x82\x70HELM-APPROVAL-v1\x58\x20" + escalate_hash


def checkpoint_challenge(count: int, root: bytes) -> bytes:
    """RF §8.2."""
    return b"\x83\x72HELM-CHECKPOINT-v1" + encode_head(0, count) + b"\x58\x20" + root


class Verifier:
    def __init__(self, anchors: list[bytes]):
        self.registry: dict[bytes, KeyEntry] = {}
        for a in anchors:
            if not ed25519.key_admissible(a):
                raise VerifierSetupError("anchor %s is not admissible" % a.hex())
            if a not in self.registry:
                self.registry[a] = KeyEntry(a, True, frozenset())
        self.records: dict[bytes, RecordInfo] = {}
        self.intents: dict[bytes, IntentInfo] = {}
        self.sequences: dict[tuple[bytes, bytes], int] = {}
        self.merkle = MerkleAccumulator()
        self.count = 0
        self.failure: VerifyError | None = None
        self.last_hash: bytes | None = None
        self.partial: Partial | None = None
        self.order: list[bytes] = []  # accepted record hashes, in order (partial streams)

    # -------------------------------------------------------------- public API

    def push(self, raw: bytes, position: int | None = None, root_proven: bool = False) -> Record:
        """Verify the next record; returns the decoded record or raises VerifyError.
        A partial stream gives each record's position in its log and, for a CHECKPOINT
        below the tree size, whether its root is proven (verification.md §10)."""
        if self.failure is not None:
            raise self.failure
        index = self.count
        self._at = (position, root_proven)
        try:
            rec = decode_record(raw)
            self._check(rec, index)
        except DecodeError as e:
            self.failure = VerifyError(e.code, index)
            raise self.failure
        except VerifyError as e:
            self.failure = e
            raise
        self._accept(rec, index)
        return rec

    def fail_at(self, code: str) -> VerifyError:
        """Record a failure at the next position (used by the pack reader for a
        record it cannot frame)."""
        if self.failure is None:
            self.failure = VerifyError(code, self.count)
        return self.failure

    def unselected(self):
        """Partial streams: the index and hash of the first accepted record that is
        neither selected nor needed (evidencepack.md §9.4), or None."""
        for i, h in enumerate(self.order):
            info = self.records[h]
            if info.extra and not info.needed:
                return i, h
        return None

    def finish(self) -> tuple[int, bytes]:
        if self.failure is not None:
            raise self.failure
        if self.count == 0:
            self.failure = VerifyError("EMPTY_STREAM", 0)
            raise self.failure
        return self.count, self.merkle.root()

    # -------------------------------------------------------------- S1-S9

    def _check(self, rec: Record, i: int) -> None:
        def fail(code, detail=""):
            raise VerifyError(code, i, detail)

        signer = self.registry.get(rec.kid)
        if signer is None:  # S1
            fail("KEY_UNKNOWN")
        if not ed25519.verify(rec.kid, rec.signed_message(), rec.signature):  # S2
            fail("SIGNATURE_INVALID")
        if signer.retired:  # S3
            fail("KEY_REVOKED")
        if rec.kind == R.TRUST_EVENT:  # S4
            if not signer.anchor:
                fail("ROLE_NOT_PERMITTED")
        elif signer.anchor or R.ROLE_KERNEL not in signer.roles:
            fail("ROLE_NOT_PERMITTED")
        if rec.hash in self.records:  # S5
            fail("DUPLICATE_RECORD")
        lifecycle = rec.kind in (R.DECISION, R.APPROVAL, R.EFFECT)
        for ph in rec.parents:  # S6
            pi = self.records.get(ph)
            if pi is None and self.partial is not None and not lifecycle:
                continue  # §10: absent parents of other kinds are not judged
            if pi is None:
                fail("PARENT_MISSING", ph.hex())
            if self.partial is not None and lifecycle:
                pi.needed = True
            if not rec.lamport > pi.lamport:
                fail("LAMPORT_NOT_INCREASING", ph.hex())
        if signer.last is not None and rec.time < signer.last_time:  # S7
            fail("TIME_REGRESSION")
        expected = self.sequences.get((rec.kid, rec.session), 0)  # S8
        strict = (self.partial is None or signer.anchor
                  or self.partial.strict_session(rec.session))
        if rec.seq > expected and strict:
            fail("SEQUENCE_GAP")
        if rec.seq < expected:
            fail("SEQUENCE_EQUIVOCATION")
        # S9
        check = {
            R.DECISION: self._check_decision,
            R.APPROVAL: self._check_approval,
            R.EFFECT: self._check_effect,
            R.TRUST_EVENT: self._check_trust_event,
            R.CHECKPOINT: self._check_checkpoint,
        }.get(rec.kind)
        if check is not None:
            check(rec, fail)

    def _check_decision(self, rec: Record, fail) -> None:
        verdict = rec.body["verdict"]
        intent_parents = []
        resolved = None
        for ph in rec.parents:  # C1
            pi = self.records[ph]
            if pi.kind == R.INTENT:
                intent_parents.append(ph)
            elif pi.kind == R.POLICY:
                pass
            elif (pi.kind == R.DECISION and pi.verdict == R.ESCALATE
                  and verdict == R.DENY and resolved is None):
                resolved = ph
            else:
                fail("PARENT_KIND_NOT_ALLOWED")
        if len(intent_parents) != 1:  # C2
            fail("DECISION_INTENT_PARENT")
        ih = intent_parents[0]
        it = self.intents[ih]
        if resolved is not None:
            if self.records[resolved].intent != ih:  # C3
                fail("ESCALATION_ALREADY_RESOLVED")
            if it.escalation is None or it.approved or it.final:  # C4
                fail("ESCALATION_ALREADY_RESOLVED")
        elif it.final or it.escalation is not None:  # C5
            fail("INTENT_ALREADY_DECIDED")
        rec._intent = ih

    def _check_approval(self, rec: Record, fail) -> None:
        if len(rec.parents) != 1:  # A1
            fail("APPROVAL_INVALID")
        eh = rec.parents[0]
        e = self.records[eh]
        if e.kind != R.DECISION or e.verdict != R.ESCALATE:  # A2
            fail("APPROVAL_INVALID")
        it = self.intents[e.intent]
        terms = it.escalation
        if it.approved or it.final:  # A3
            fail("ESCALATION_ALREADY_RESOLVED")
        if rec.time < terms.not_before:  # A4
            fail("APPROVAL_TIMELOCK")
        if rec.time > terms.expires:  # A5
            fail("APPROVAL_EXPIRED")
        challenge = approval_challenge(eh)
        approvals = rec.body["approvals"]
        for key, sig in approvals:  # A6
            k = self.registry.get(key)
            if k is None or k.anchor or k.retired or terms.role not in k.roles:
                fail("APPROVAL_ROLE", key.hex())
            if not ed25519.verify(key, challenge, sig):
                fail("APPROVAL_INVALID", key.hex())
        if len(approvals) < terms.quorum:  # A7
            fail("APPROVAL_QUORUM")
        rec._intent = e.intent

    def _check_effect(self, rec: Record, fail) -> None:
        allows, escalates, approvals = [], [], []
        for ph in rec.parents:  # E1
            pi = self.records[ph]
            if pi.kind == R.DECISION:
                if pi.verdict == R.DENY:
                    fail("EFFECT_FOR_DENY")
                (allows if pi.verdict == R.ALLOW else escalates).append(pi.intent)
            elif pi.kind == R.APPROVAL:
                approvals.append(pi.intent)
            elif pi.kind == R.ATTESTATION:
                pass
            else:
                fail("PARENT_KIND_NOT_ALLOWED")
        # E2
        if len(allows) == 1 and not escalates and not approvals:
            ih = allows[0]
        elif (len(escalates) == 1 and len(approvals) == 1 and not allows
              and escalates[0] == approvals[0]):
            ih = escalates[0]
        else:
            fail("EFFECT_WITHOUT_PERMIT")
        it = self.intents[ih]
        if it.used:  # E3
            fail("PERMIT_ALREADY_USED")
        b = rec.body
        if (b["tool"], b["call_kind"], b["args"]) != (it.tool, it.call_kind, it.args):  # E4
            fail("EFFECT_MISMATCH")
        rec._intent = ih

    def _check_trust_event(self, rec: Record, fail) -> None:
        b = rec.body
        action = b["action"]
        k = b["key"]
        if action in (R.ROTATE, R.REVOKE):
            entry = self.registry.get(k)
            if entry is None:  # T1
                fail("TRUST_EVENT_INVALID")
            if entry.anchor or entry.retired:  # T2
                fail("TRUST_EVENT_INVALID")
            c = None
            if b["cutoff"] is not None:  # T3
                ci = self.records.get(b["cutoff"])
                if ci is None or ci.kind != R.CHECKPOINT:
                    fail("TRUST_EVENT_INVALID")
                c = ci.position
                ci.needed = True
            if not (entry.last is None or (c is not None and entry.last <= c)):  # T4
                fail("REVOCATION_CUTOFF_VIOLATED")
        if action in (R.PUBLISH, R.ROTATE):
            n = k if action == R.PUBLISH else b["new_key"]
            if n in self.registry:  # T5
                fail("TRUST_EVENT_INVALID")
            if not ed25519.key_admissible(n):  # T6
                fail("TRUST_KEY_INVALID")

    def _check_checkpoint(self, rec: Record, fail) -> None:
        b = rec.body
        position, root_proven = self._at
        if self.partial is None:
            if b["count"] != self.count:  # K1
                fail("CHECKPOINT_COUNT")
            if b["root"] != self.merkle.root():  # K2
                fail("CHECKPOINT_ROOT")
        else:  # §10
            if b["count"] != position:
                fail("CHECKPOINT_COUNT")
            if position == self.partial.tree_size:
                ok = b["root"] == self.partial.tree_root
            else:
                ok = root_proven
            if not ok:
                fail("CHECKPOINT_ROOT")
        challenge = None
        for key, sig in b["cosignatures"]:  # K3
            k = self.registry.get(key)
            if k is None or k.anchor or k.retired or R.ROLE_WITNESS not in k.roles:
                fail("WITNESS_INVALID", key.hex())
            if challenge is None:
                challenge = checkpoint_challenge(b["count"], b["root"])
            if not ed25519.verify(key, challenge, sig):
                fail("WITNESS_INVALID", key.hex())

    # -------------------------------------------------------------- S10

    def _accept(self, rec: Record, i: int) -> None:
        info = RecordInfo(i, rec.kind, rec.lamport)
        b = rec.body
        if rec.kind == R.INTENT:
            info.intent = rec.hash
            self.intents[rec.hash] = IntentInfo(b["tool"], b["call_kind"], b["args"])
        elif rec.kind == R.DECISION:
            info.verdict = b["verdict"]
            info.intent = rec._intent
            it = self.intents[rec._intent]
            if b["verdict"] == R.ESCALATE:
                it.escalation = b["escalation"]
            else:
                it.final = True
        elif rec.kind == R.APPROVAL:
            info.intent = rec._intent
            self.intents[rec._intent].approved = True
        elif rec.kind == R.EFFECT:
            self.intents[rec._intent].used = True
        elif rec.kind == R.TRUST_EVENT:
            if b["action"] == R.PUBLISH:
                self.registry[b["key"]] = KeyEntry(b["key"], False, frozenset(b["roles"]))
            elif b["action"] == R.ROTATE:
                self.registry[b["new_key"]] = KeyEntry(b["new_key"], False, frozenset(b["roles"]))
                self.registry[b["key"]].retired = True
            else:
                self.registry[b["key"]].retired = True
        if self.partial is not None:
            position = self._at[0]
            info.extra = (not self.partial.selects(rec) and rec.kind != R.TRUST_EVENT
                          and position != self.partial.tree_size)
            self.order.append(rec.hash)
        self.records[rec.hash] = info
        signer = self.registry[rec.kid]
        signer.last = i
        signer.last_time = rec.time
        self.sequences[(rec.kid, rec.session)] = rec.seq + 1
        self.merkle.append(rec.hash)
        self.count += 1
        self.last_hash = rec.hash
