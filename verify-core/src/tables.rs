//! The verifier's tables, in memory the caller provides.
//!
//! Nothing here allocates: a microcontroller passes static arrays, a C host passes its
//! own memory, the CLI passes vectors sized for millions of records ([`OwnedTables`]).
//! A full table is an error ([`crate::ErrorCode::CapacityExceeded`]), never a silent pass.

use crate::ed25519::PublicKey;
use crate::registry::{MAX_ROLES, MAX_ROLE_LEN};
use crate::Hash;

/// What the verifier remembers of every record: enough to check later records that
/// name it as a parent. 46 bytes, alignment 1 (byte arrays), so that a million records
/// take 46 MB and not the 48 that a `u64` field's alignment would round them to.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordSlot {
    pub(crate) hash: Hash,
    lamport: [u8; 8],
    /// INTENT, DECISION, APPROVAL, EFFECT: position in the intent table. CHECKPOINT: its
    /// own place in the record table.
    link: [u8; 4],
    pub(crate) kind: u8,
    /// DECISION: the verdict (low bits); partial streams: [`SLOT_EXTRA`], [`SLOT_NEEDED`].
    pub(crate) flags: u8,
}

/// Partial streams: an accepted record that is not selected, not a TRUST_EVENT and not
/// the checkpoint (spec/verification.md §10).
pub(crate) const SLOT_EXTRA: u8 = 0x40;
/// Partial streams: named as a parent by a DECISION, APPROVAL or EFFECT, or as a cut-off.
pub(crate) const SLOT_NEEDED: u8 = 0x80;

impl RecordSlot {
    pub(crate) fn new(hash: Hash, lamport: u64, link: u32, kind: u8, flags: u8) -> RecordSlot {
        RecordSlot {
            hash,
            lamport: lamport.to_le_bytes(),
            link: link.to_le_bytes(),
            kind,
            flags,
        }
    }

    pub(crate) fn lamport(&self) -> u64 {
        u64::from_le_bytes(self.lamport)
    }

    pub(crate) fn link(&self) -> u32 {
        u32::from_le_bytes(self.link)
    }

    /// A DECISION's verdict (the flags' low bits).
    pub(crate) fn verdict(&self) -> u8 {
        self.flags & 0x0f
    }
}

/// Lifecycle of one INTENT: which decisions it has had. (Its call digest, which its
/// EFFECT must match, is in [`Tables::digests`].)
#[derive(Clone, Copy, Debug, Default)]
pub struct IntentSlot {
    /// 1 + position in the escalation table, or 0.
    escalation: [u8; 4],
    pub(crate) flags: u8,
}

impl IntentSlot {
    pub(crate) fn escalation(&self) -> u32 {
        u32::from_le_bytes(self.escalation)
    }

    pub(crate) fn set_escalation(&mut self, e: u32) {
        self.escalation = e.to_le_bytes();
    }
}

pub(crate) const INTENT_FINAL: u8 = 1; // an ALLOW or DENY was recorded
pub(crate) const INTENT_ALLOWED: u8 = 2; // ... and it was an ALLOW
pub(crate) const INTENT_ESCALATED: u8 = 4; // an ESCALATE was recorded
pub(crate) const INTENT_APPROVED: u8 = 8; // ... and an APPROVAL granted it
pub(crate) const INTENT_EFFECT: u8 = 16; // the permit was used by an EFFECT

/// An ESCALATE's terms, kept until the end (APPROVALs are checked against them). Byte
/// arrays (alignment 1): 51 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct EscalationSlot {
    not_before: [u8; 8],
    expires: [u8; 8],
    /// 1-16 (checked when the DECISION decodes).
    pub(crate) quorum: u8,
    pub(crate) role: [u8; MAX_ROLE_LEN],
    pub(crate) role_len: u8,
    pub(crate) resolved: bool,
}

impl EscalationSlot {
    pub(crate) fn new(not_before: u64, expires: u64, quorum: u8, role: [u8; MAX_ROLE_LEN], role_len: u8) -> Self {
        EscalationSlot {
            not_before: not_before.to_le_bytes(),
            expires: expires.to_le_bytes(),
            quorum,
            role,
            role_len,
            resolved: false,
        }
    }

    pub(crate) fn not_before(&self) -> u64 {
        u64::from_le_bytes(self.not_before)
    }

    pub(crate) fn expires(&self) -> u64 {
        u64::from_le_bytes(self.expires)
    }
}

/// A key of the trust registry: an anchor or a key published by a TRUST_EVENT.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeySlot {
    pub(crate) key: Option<PublicKey>,
    pub(crate) anchor: bool,
    pub(crate) revoked: bool,
    pub(crate) roles: [[u8; MAX_ROLE_LEN]; MAX_ROLES],
    pub(crate) role_lens: [u8; MAX_ROLES],
    /// 1 + stream position of the last record this key signed, or 0.
    pub(crate) last_signed: u64,
    pub(crate) last_time: u64,
}

impl KeySlot {
    pub(crate) fn has_role(&self, role: &str) -> bool {
        self.roles
            .iter()
            .zip(self.role_lens.iter())
            .any(|(r, &n)| r.get(..usize::from(n)) == Some(role.as_bytes()))
    }
}

/// Sequence state of one (signer, session) pair. Byte arrays (alignment 1): 45 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamSlot {
    /// SHA-256 over the signer key and the session id.
    pub(crate) id: Hash,
    pub(crate) used: bool,
    next_seq: [u8; 8],
    /// Table position of the last record of this stream.
    last: [u8; 4],
}

impl StreamSlot {
    pub(crate) fn new(id: Hash, next_seq: u64, last: u32) -> StreamSlot {
        StreamSlot {
            id,
            used: true,
            next_seq: next_seq.to_le_bytes(),
            last: last.to_le_bytes(),
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        u64::from_le_bytes(self.next_seq)
    }

    pub(crate) fn last(&self) -> u32 {
        u32::from_le_bytes(self.last)
    }
}

/// Memory for one verification, borrowed from the caller.
///
/// Sizing: `records` one slot per record; `index` at least 8/7 of `records` (an open
/// addressing table over record hashes); `intents` and `digests` one per INTENT;
/// `escalations` one per ESCALATE; `keys` anchors plus published keys; `streams` at least
/// 8/7 of the number of (signer, session) pairs.
#[derive(Debug)]
pub struct Tables<'t> {
    /// One slot per record, in stream order.
    pub records: &'t mut [RecordSlot],
    /// Hash index over `records`.
    pub index: &'t mut [u32],
    /// One slot per INTENT.
    pub intents: &'t mut [IntentSlot],
    /// One per INTENT: SHA-256 over its tool, call kind and argument commitment
    /// ([`crate::call_digest`]), which its EFFECT must match. Empty only for a verifier
    /// made with [`crate::Verifier::new_deferring_effect_match`].
    pub digests: &'t mut [Hash],
    /// One slot per ESCALATE.
    pub escalations: &'t mut [EscalationSlot],
    /// Trust registry.
    pub keys: &'t mut [KeySlot],
    /// Sequence numbers per (signer, session).
    pub streams: &'t mut [StreamSlot],
}

/// Heap-backed tables, sized for a number of records.
#[cfg(feature = "alloc")]
#[derive(Debug)]
pub struct OwnedTables {
    records: alloc::vec::Vec<RecordSlot>,
    index: alloc::vec::Vec<u32>,
    intents: alloc::vec::Vec<IntentSlot>,
    digests: alloc::vec::Vec<Hash>,
    escalations: alloc::vec::Vec<EscalationSlot>,
    keys: alloc::vec::Vec<KeySlot>,
    streams: alloc::vec::Vec<StreamSlot>,
}

/// Capacities for [`OwnedTables`].
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// Records in the stream.
    pub records: usize,
    /// INTENT records.
    pub intents: usize,
    /// ESCALATE decisions.
    pub escalations: usize,
    /// Anchors plus published keys.
    pub keys: usize,
    /// (signer, session) pairs.
    pub streams: usize,
}

impl Capacity {
    /// Room for `records` records of any mix (every table as large as it could need).
    pub fn for_records(records: usize) -> Capacity {
        Capacity {
            records,
            intents: records,
            escalations: records,
            keys: 256,
            streams: records,
        }
    }
}

#[cfg(feature = "alloc")]
impl OwnedTables {
    /// Allocates tables of the given capacities.
    pub fn new(c: Capacity) -> OwnedTables {
        Self::allocate(c, true)
    }

    /// Tables without call digests, for [`crate::Verifier::new_deferring_effect_match`]
    /// (32 bytes less per INTENT).
    pub fn without_digests(c: Capacity) -> OwnedTables {
        Self::allocate(c, false)
    }

    fn allocate(c: Capacity, digests: bool) -> OwnedTables {
        let index_len = (c.records.saturating_mul(8) / 7).saturating_add(1);
        let streams_len = (c.streams.saturating_mul(8) / 7).saturating_add(1);
        OwnedTables {
            records: alloc::vec![RecordSlot::default(); c.records],
            index: alloc::vec![0; index_len],
            intents: alloc::vec![IntentSlot::default(); c.intents],
            digests: alloc::vec![[0; 32]; if digests { c.intents } else { 0 }],
            escalations: alloc::vec![EscalationSlot::default(); c.escalations],
            keys: alloc::vec![KeySlot::default(); c.keys],
            streams: alloc::vec![StreamSlot::default(); streams_len],
        }
    }

    /// Bytes the tables for `c` take ([`OwnedTables::new`]).
    pub fn bytes_for(c: Capacity) -> u64 {
        Self::bytes_for_tables(c, true)
    }

    /// Bytes the tables for `c` take, with or without call digests.
    pub fn bytes_for_tables(c: Capacity, digests: bool) -> u64 {
        use core::mem::size_of;
        let index = c.records.saturating_mul(8) / 7;
        let streams = c.streams.saturating_mul(8) / 7;
        [
            c.records.saturating_mul(size_of::<RecordSlot>()),
            index.saturating_mul(size_of::<u32>()),
            c.intents.saturating_mul(size_of::<IntentSlot>()),
            if digests {
                c.intents.saturating_mul(size_of::<Hash>())
            } else {
                0
            },
            c.escalations.saturating_mul(size_of::<EscalationSlot>()),
            c.keys.saturating_mul(size_of::<KeySlot>()),
            streams.saturating_mul(size_of::<StreamSlot>()),
        ]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b as u64))
    }

    /// Borrows the tables for one verification. Reusing them for another verification
    /// is fine: the verifier clears what it uses.
    pub fn tables(&mut self) -> Tables<'_> {
        Tables {
            records: &mut self.records,
            index: &mut self.index,
            intents: &mut self.intents,
            digests: &mut self.digests,
            escalations: &mut self.escalations,
            keys: &mut self.keys,
            streams: &mut self.streams,
        }
    }
}

/// Bucket of a 32-byte hash in a table of `len` buckets.
pub(crate) fn bucket(hash: &Hash, len: usize) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[..8]);
    let h = u64::from_le_bytes(b);
    // len > 0 is checked by callers; `%` by a non-zero usize cannot panic.
    h.checked_rem(len as u64).unwrap_or(0) as usize
}
