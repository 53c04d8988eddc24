//! Pack errors: the container rule broken, the entry and byte offset, or the record
//! error from verify-core.

use core::fmt;

use verify_core::VerifyError;

macro_rules! pack_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($num:expr, $name:expr), )*) => {
        /// What rule of the pack container was broken (spec/evidencepack.md).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum PackCode {
            $( $(#[$doc])* $variant, )*
        }

        impl PackCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [PackCode] = &[$(PackCode::$variant,)*];

            /// Stable name, e.g. `TAR_BAD_PATH`.
            pub const fn name(self) -> &'static str {
                match self { $(PackCode::$variant => $name,)* }
            }

            /// Stable number (1000–1999; record errors keep verify-core's numbers).
            pub const fn number(self) -> u16 {
                match self { $(PackCode::$variant => $num,)* }
            }

            /// Looks a code up by name.
            pub fn from_name(name: &str) -> Option<PackCode> {
                match name { $($name => Some(PackCode::$variant),)* _ => None }
            }
        }
    };
}

pack_codes! {
    /// The stream ended inside a header, an entry, its padding or before the end blocks.
    TarTruncated = (1000, "TAR_TRUNCATED"),
    /// A header checksum does not match.
    TarHeaderChecksum = (1001, "TAR_HEADER_CHECKSUM"),
    /// An entry that is not a regular file: link, device, directory, pax or GNU header.
    TarNotRegularFile = (1002, "TAR_NOT_REGULAR_FILE"),
    /// An absolute path, `..`, an empty component or a character outside `[a-z0-9._/-]`.
    TarBadPath = (1003, "TAR_BAD_PATH"),
    /// A header that is valid tar but not the canonical one.
    TarNonCanonicalHeader = (1004, "TAR_NON_CANONICAL_HEADER"),
    /// Non-zero bytes in the padding after an entry or in the end blocks.
    TarNonZeroPadding = (1005, "TAR_NONZERO_PADDING"),
    /// Bytes after the two end blocks.
    TarTrailingData = (1006, "TAR_TRAILING_DATA"),
    /// An entry name or position the layout does not allow.
    UnexpectedEntry = (1100, "PACK_UNEXPECTED_ENTRY"),
    /// The manifest does not decode, or is larger than allowed.
    ManifestInvalid = (1101, "PACK_MANIFEST_INVALID"),
    /// The manifest's producer key is not an active kernel key at the end of the pack.
    ManifestSigner = (1102, "PACK_MANIFEST_SIGNER"),
    /// The manifest's signature does not verify.
    ManifestSignature = (1103, "PACK_MANIFEST_SIGNATURE"),
    /// A count or root in the manifest differs from the pack's contents.
    ManifestMismatch = (1104, "PACK_MANIFEST_MISMATCH"),
    /// The withheld list is not a sequence of ascending, distinct 32-byte byte strings.
    WithheldInvalid = (1105, "PACK_WITHHELD_INVALID"),
    /// A blob whose SHA-256 is not its name.
    BlobHashMismatch = (1106, "PACK_BLOB_HASH_MISMATCH"),
    /// Blob names not strictly ascending, or a blob also listed as withheld.
    BlobOrder = (1107, "PACK_BLOB_ORDER"),
    /// A record references content that is neither present nor withheld.
    BlobMissing = (1108, "PACK_BLOB_MISSING"),
    /// A blob or withheld entry that no record references.
    BlobUnreferenced = (1109, "PACK_BLOB_UNREFERENCED"),
    /// A record (or its proof item) that does not fit its segment, or a segment with the
    /// wrong record count.
    SegmentInvalid = (1110, "PACK_SEGMENT_INVALID"),
    /// Partial packs: a proof item not in its exact form, a position beyond the tree, an
    /// inclusion path on the checkpoint, or a consistency path where none belongs.
    ProofInvalid = (1111, "PACK_PROOF_INVALID"),
    /// Partial packs: an inclusion proof that does not lead to the tree root.
    ProofMismatch = (1112, "PACK_PROOF_MISMATCH"),
    /// Partial packs: positions not strictly ascending.
    ProofOrder = (1113, "PACK_PROOF_ORDER"),
    /// Partial packs: the record at the tree size's position is not a CHECKPOINT, or the
    /// pack does not end with it.
    CheckpointInvalid = (1114, "PACK_CHECKPOINT_INVALID"),
    /// Partial packs: a record neither selected nor needed.
    RecordUnselected = (1115, "PACK_RECORD_UNSELECTED"),
    /// A record failed verification (see the record error).
    RecordInvalid = (1200, "PACK_RECORD_INVALID"),
    /// A buffer or table provided by the caller is too small for this pack.
    CapacityExceeded = (1900, "PACK_CAPACITY_EXCEEDED"),
    /// A compressed transport wrapper is corrupt, too large, or expands too much.
    TransportInvalid = (1901, "PACK_TRANSPORT_INVALID"),
}

impl fmt::Display for PackCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A pack verification failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackError {
    /// The container rule broken (`RecordInvalid` when a record failed).
    pub code: PackCode,
    /// Byte offset in the (uncompressed) pack where the failure was detected.
    pub offset: u64,
    /// 0-based index of the tar entry, if any.
    pub entry: Option<u32>,
    entry_name: [u8; 100],
    entry_name_len: u8,
    /// The record error, for `RecordInvalid`.
    pub record: Option<VerifyError>,
    /// The record involved (its place in the pack), for blob reference and proof errors.
    pub index: Option<u64>,
    /// Partial packs: the position in the log of the record involved.
    pub position: Option<u64>,
    /// The blob name involved, for blob errors.
    pub subject: Option<verify_core::Hash>,
    /// Bytes of tables the pack would need, for capacity errors.
    pub needed: Option<u64>,
    /// The decompressor's or loader's own message (std only).
    #[cfg(feature = "std")]
    pub transport: Option<std::string::String>,
    /// A short English explanation.
    pub detail: &'static str,
}

impl PackError {
    pub(crate) fn new(code: PackCode, offset: u64, detail: &'static str) -> PackError {
        PackError {
            code,
            offset,
            entry: None,
            entry_name: [0; 100],
            entry_name_len: 0,
            record: None,
            index: None,
            position: None,
            subject: None,
            needed: None,
            #[cfg(feature = "std")]
            transport: None,
            detail,
        }
    }

    pub(crate) fn at_entry(mut self, index: u32, name: &str) -> PackError {
        self.entry = Some(index);
        let n = name.len().min(100);
        if let (Some(dst), Some(src)) = (self.entry_name.get_mut(..n), name.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
            self.entry_name_len = n as u8;
        }
        self
    }

    pub(crate) fn record(e: VerifyError, offset: u64) -> PackError {
        let mut p = PackError::new(PackCode::RecordInvalid, offset, "a record failed verification");
        p.record = Some(e);
        p
    }

    /// The tar entry's name, if the failure is inside an entry.
    pub fn entry_name(&self) -> Option<&str> {
        let n = self.entry_name.get(..usize::from(self.entry_name_len))?;
        if n.is_empty() {
            return None;
        }
        core::str::from_utf8(n).ok()
    }

    /// The most specific stable error name: the record's code for record failures.
    pub fn code_name(&self) -> &'static str {
        match &self.record {
            Some(r) => r.code.name(),
            None => self.code.name(),
        }
    }

    /// The most specific stable error number.
    pub fn code_number(&self) -> u16 {
        match &self.record {
            Some(r) => r.code.number(),
            None => self.code.number(),
        }
    }
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.record {
            return write!(f, "{r} (pack byte {})", self.offset);
        }
        write!(f, "{}: {}", self.code.name(), self.detail)?;
        #[cfg(feature = "std")]
        if let Some(t) = &self.transport {
            write!(f, " ({t})")?;
        }
        match (self.entry, self.entry_name()) {
            (Some(i), Some(n)) => write!(f, " (entry #{i} {n}, pack byte {})", self.offset),
            _ => write!(f, " (pack byte {})", self.offset),
        }
    }
}

impl core::error::Error for PackError {}
