//! ProofGraph store (being written).
