"""helm_verify: an independent HELM record and EvidencePack verifier.

Written from the specification in ``spec/`` alone (record-format.md,
verification.md, errors.md, registries.md, ed25519.md, evidencepack.md).
It shares no code with the Rust reference implementation.
"""

from .errors import VerifyError, RECORD_CODES, PACK_CODES
from .verifier import Verifier, VerifierSetupError
from .pack import verify_pack_bytes, PackResult

__all__ = [
    "VerifyError",
    "RECORD_CODES",
    "PACK_CODES",
    "Verifier",
    "VerifierSetupError",
    "verify_pack_bytes",
    "PackResult",
]
