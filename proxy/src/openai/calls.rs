//! What became of the call ids the proxy has seen, beyond the kernel's open INTENTs.
//!
//! The kernel finds an open INTENT by its call id ([`helm_kernel::Kernel::intent_for_call`],
//! durable: the id is in the INTENT). Once a call's effect is recorded, or it is denied,
//! the kernel forgets the id; but clients resend the whole conversation with every
//! request, tool results included. This book remembers the ids whose result was
//! already recorded (a resent result is not recorded twice) and the ids that were
//! denied (a result for one is a violation naming its INTENT). At start it is rebuilt
//! from the store (INTENT extension maps name the ids; EFFECTs the proxy records carry
//! them too), so a restart keeps it. It holds at most `cap` ids, forgetting the oldest.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use sha2::{Digest, Sha256};
use verify_core::{Body, Hash, Record, Verdict};

/// What the book knows of a call id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    /// Its result is recorded (an EFFECT).
    Completed,
    /// Its result is being recorded by a request in flight.
    Reporting,
    /// It was denied (the INTENT, when known, and the reason).
    Denied(Option<Hash>, String),
}

type Key = [u8; 16];

fn key(principal: &str, call_id: &str) -> Key {
    let mut h = Sha256::new();
    h.update((principal.len() as u64).to_be_bytes());
    h.update(principal.as_bytes());
    h.update(call_id.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    for (o, i) in k.iter_mut().zip(d.iter()) {
        *o = *i;
    }
    k
}

/// The book of call ids.
#[derive(Debug)]
pub(crate) struct CallBook {
    map: HashMap<Key, Known>,
    order: VecDeque<Key>,
    cap: usize,
}

impl CallBook {
    pub(crate) fn new(cap: usize) -> CallBook {
        CallBook {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub(crate) fn get(&self, principal: &str, call_id: &str) -> Option<&Known> {
        self.map.get(&key(principal, call_id))
    }

    pub(crate) fn set(&mut self, principal: &str, call_id: &str, known: Known) {
        self.set_key(key(principal, call_id), known);
    }

    fn set_key(&mut self, k: Key, known: Known) {
        if self.map.insert(k, known).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    pub(crate) fn forget(&mut self, principal: &str, call_id: &str) {
        // The order queue keeps the key; it is skipped when it comes up (no entry).
        self.map.remove(&key(principal, call_id));
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Rebuilds the book from a store's records (`DIR/records`), read without its lock.
    pub(crate) fn from_store(store_dir: &Path, cap: usize) -> Result<CallBook, String> {
        let mut book = CallBook::new(cap);
        // INTENT -> key of its call id; permit (ALLOW, ESCALATE, APPROVAL) -> INTENT.
        let mut intents: HashMap<Hash, Key> = HashMap::new();
        let mut permits: HashMap<Hash, Hash> = HashMap::new();
        helm_kernel::store::read_records(&store_dir.join("records"), |_, bytes| {
            let Ok(r) = Record::decode(bytes) else {
                return Ok::<(), helm_kernel::store::StoreError>(());
            };
            match r.body {
                Body::Intent { .. } => {
                    if let Some(id) = r.ext.and_then(call_id_of) {
                        intents.insert(r.hash, key(r.principal, id));
                    }
                }
                Body::Decision { verdict, reason, .. } => {
                    let Some(intent) = r.parents.iter().find(|p| intents.contains_key(p)) else {
                        return Ok(());
                    };
                    match verdict {
                        Verdict::Allow | Verdict::Escalate => {
                            permits.insert(r.hash, intent);
                        }
                        Verdict::Deny => {
                            if let Some(k) = intents.remove(&intent) {
                                book.set_key(k, Known::Denied(Some(intent), reason.to_owned()));
                            }
                        }
                    }
                }
                Body::Approval { .. } => {
                    if let Some(intent) = r.parents.iter().find_map(|p| permits.get(&p).copied()) {
                        permits.insert(r.hash, intent);
                    }
                }
                Body::Effect { .. } => {
                    if let Some(id) = r.ext.and_then(call_id_of) {
                        book.set_key(key(r.principal, id), Known::Completed);
                    }
                    if let Some(intent) = r.parents.iter().find_map(|p| permits.get(&p).copied()) {
                        if let Some(k) = intents.remove(&intent) {
                            book.set_key(k, Known::Completed);
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        })
        .map_err(|e| format!("reading the store for call ids: {e}"))?;
        Ok(book)
    }
}

/// The extension map `{"call_id": id}` (as the kernel writes it on INTENTs).
pub(crate) fn call_id_ext(id: &str) -> Vec<u8> {
    let mut w = verify_core::CborWriter::new();
    w.map(1).text("call_id").text(id);
    w.into_bytes()
}

/// The `call_id` of an extension map written by [`call_id_ext`].
pub(crate) fn call_id_of(ext: &[u8]) -> Option<&str> {
    let mut r = verify_core::cbor::Reader::new(ext);
    if r.map_len().ok()? != 1 || r.text().ok()? != "call_id" {
        return None;
    }
    r.text().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_forgets_the_oldest() {
        let mut b = CallBook::new(2);
        b.set("p", "a", Known::Completed);
        b.set("p", "b", Known::Denied(None, "POLICY_DENY".into()));
        b.set("q", "a", Known::Completed);
        assert_eq!(b.len(), 2);
        assert_eq!(b.get("p", "a"), None);
        assert_eq!(b.get("q", "a"), Some(&Known::Completed));
        b.forget("q", "a");
        assert_eq!(b.get("q", "a"), None);
        assert_eq!(call_id_of(&call_id_ext("call_1")), Some("call_1"));
    }
}
