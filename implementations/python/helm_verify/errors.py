"""Error codes of spec/errors.md and spec/evidencepack.md §7."""

RECORD_CODES = {
    # rule 1: decoding
    "CBOR_MALFORMED": 100,
    "CBOR_NON_CANONICAL": 101,
    "CBOR_TRAILING_BYTES": 102,
    "COSE_STRUCTURE": 110,
    "COSE_ALGORITHM": 111,
    "COSE_KID_MISSING": 112,
    "SCHEMA_UNKNOWN_FIELD": 120,
    "SCHEMA_MISSING_FIELD": 121,
    "SCHEMA_INVALID_VALUE": 122,
    "UNKNOWN_KIND": 123,
    "UNKNOWN_REASON_CODE": 124,
    "UNKNOWN_ATTESTATION_TYPE": 125,
    "UNSUPPORTED_VERSION": 126,
    "RECORD_TOO_LARGE": 127,
    # rule 2: trust
    "KEY_UNKNOWN": 200,
    "SIGNATURE_INVALID": 201,
    "ROLE_NOT_PERMITTED": 202,
    "KEY_REVOKED": 203,
    "TRUST_KEY_INVALID": 204,
    "TRUST_EVENT_INVALID": 205,
    "REVOCATION_CUTOFF_VIOLATED": 206,
    # rule 3: causality
    "PARENT_MISSING": 300,
    "LAMPORT_NOT_INCREASING": 301,
    "TIME_REGRESSION": 302,
    "DUPLICATE_RECORD": 303,
    # rule 4: sequence
    "SEQUENCE_GAP": 400,
    "SEQUENCE_EQUIVOCATION": 401,
    # rule 5: lifecycle
    "PARENT_KIND_NOT_ALLOWED": 500,
    "DECISION_INTENT_PARENT": 501,
    "INTENT_ALREADY_DECIDED": 502,
    "ESCALATION_ALREADY_RESOLVED": 503,
    "EFFECT_WITHOUT_PERMIT": 510,
    "EFFECT_FOR_DENY": 511,
    "EFFECT_MISMATCH": 512,
    "PERMIT_ALREADY_USED": 513,
    "APPROVAL_INVALID": 520,
    "APPROVAL_ROLE": 521,
    "APPROVAL_QUORUM": 522,
    "APPROVAL_TIMELOCK": 523,
    "APPROVAL_EXPIRED": 524,
    # rule 6: checkpoints
    "CHECKPOINT_COUNT": 600,
    "CHECKPOINT_ROOT": 601,
    "WITNESS_INVALID": 602,
    # rule 0
    "CAPACITY_EXCEEDED": 900,
    "EMPTY_STREAM": 901,
}

PACK_CODES = {
    "TAR_TRUNCATED": 1000,
    "TAR_HEADER_CHECKSUM": 1001,
    "TAR_NOT_REGULAR_FILE": 1002,
    "TAR_BAD_PATH": 1003,
    "TAR_NON_CANONICAL_HEADER": 1004,
    "TAR_NONZERO_PADDING": 1005,
    "TAR_TRAILING_DATA": 1006,
    "PACK_UNEXPECTED_ENTRY": 1100,
    "PACK_MANIFEST_INVALID": 1101,
    "PACK_MANIFEST_SIGNER": 1102,
    "PACK_MANIFEST_SIGNATURE": 1103,
    "PACK_MANIFEST_MISMATCH": 1104,
    "PACK_WITHHELD_INVALID": 1105,
    "PACK_BLOB_HASH_MISMATCH": 1106,
    "PACK_BLOB_ORDER": 1107,
    "PACK_BLOB_MISSING": 1108,
    "PACK_BLOB_UNREFERENCED": 1109,
    "PACK_SEGMENT_INVALID": 1110,
    "PACK_PROOF_INVALID": 1111,
    "PACK_PROOF_MISMATCH": 1112,
    "PACK_PROOF_ORDER": 1113,
    "PACK_CHECKPOINT_INVALID": 1114,
    "PACK_RECORD_UNSELECTED": 1115,
    "PACK_RECORD_INVALID": 1200,
    "PACK_CAPACITY_EXCEEDED": 1900,
    "PACK_TRANSPORT_INVALID": 1901,
}


class DecodeError(Exception):
    """A rule-1 failure while decoding one record (no index yet)."""

    def __init__(self, code: str):
        assert code in RECORD_CODES, code
        super().__init__(code)
        self.code = code


class VerifyError(Exception):
    """A verdict: reject with a code name and, for record errors, an index."""

    def __init__(self, code: str, index: int | None = None, detail: str = ""):
        assert code in RECORD_CODES or code in PACK_CODES, code
        super().__init__(f"{code} at {index}: {detail}" if index is not None else f"{code}: {detail}")
        self.code = code
        self.index = index
        self.detail = detail

    @property
    def number(self) -> int:
        return RECORD_CODES.get(self.code) or PACK_CODES[self.code]

    @property
    def is_record_error(self) -> bool:
        return self.code in RECORD_CODES
