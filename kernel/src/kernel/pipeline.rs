//! Decisions signed outside the kernel's lock, committed in order.
//!
//! Signing is most of a decision's cost (two Ed25519 signatures). Under one lock a
//! decision would use one core however many callers wait, so `evaluate` works in three
//! steps:
//!
//! 1. **Reserve**, under the lock: Guardian decides with the evidence of every decision
//!    reserved before (an ALLOW counts at once), and the decision takes a ticket, its
//!    Lamport clocks, kernel time and its session's sequence numbers.
//! 2. **Sign**, outside the lock, on whichever core is free. The INTENT's parent is the
//!    previous record of its session; if that record is still being signed, the INTENT
//!    waits for its hash (a [`Slot`]), so each session stays a hash chain.
//! 3. **Commit**, under the lock, in ticket order: whoever holds the next ticket appends
//!    it, and every signed ticket after it, to the store and applies them, so the
//!    store's order is the reservation order and every rule of the stream (Lamport
//!    along edges, time never going back, sequences without gaps) holds as if
//!    decisions were made one at a time. Guardian's evidence at reservation is
//!    therefore exactly the stream before the DECISION, and replay agrees.
//!
//! A failure (a signature, the store) fails its decision and every decision reserved
//! after it that is still in flight (their evidence or their session chain may include
//! the failed one), rolls back the evidence each of them counted, and refuses new
//! decisions until the pipeline has drained; then the state is exactly the store's and
//! decisions go on. Operations that write other records (effects, approvals, ticks,
//! statements) wait for the pipeline to drain and then run alone, as before.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use verify_core::body;
use verify_core::{sha256, CallKind, Escalation, Hash, Kind, RecordBuilder, Verdict};

use super::{call_id_ext, hexs, Answer, Kernel, KernelError, State, Status};
use crate::signer::sign_record;
use crate::store::Ticket;

/// A hash that another thread is computing: the last record of a decision in flight.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// `None` until filled; then the hash, or `None` if the decision failed. With it,
    /// how many threads wait (a notification is a system call: only when needed).
    value: Mutex<(Option<Option<Hash>>, u32)>,
    filled: Condvar,
}

impl Slot {
    fn fill(&self, v: Option<Hash>) {
        let mut g = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        if g.0.is_none() {
            g.0 = Some(v);
        }
        if g.1 > 0 {
            self.filled.notify_all();
        }
    }

    fn wait(&self) -> Option<Hash> {
        let mut g = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(v) = g.0 {
                return v;
            }
            g.1 = g.1.saturating_add(1);
            g = self.filled.wait(g).unwrap_or_else(PoisonError::into_inner);
            g.1 = g.1.saturating_sub(1);
        }
    }
}

/// The durability tickets of a commit (records, blobs).
type Tickets = (Option<Ticket>, Option<Ticket>);

/// The outcome of a committed (or failed) decision, handed to the caller that waits.
type Outcome = Result<(Answer, Tickets), String>;

#[derive(Debug, Default)]
struct Reply {
    /// The outcome once filled, and whether its caller waits for it (only then is a
    /// notification, a system call, needed).
    value: Mutex<(Option<Outcome>, bool)>,
    ready: Condvar,
}

impl Reply {
    fn fill(&self, v: Outcome) {
        let mut g = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 = Some(v);
        if g.1 {
            self.ready.notify_all();
        }
    }

    fn wait(&self) -> Outcome {
        let mut g = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(v) = g.0.take() {
                return v;
            }
            g.1 = true;
            g = self.ready.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The decisions in flight of one session.
#[derive(Debug)]
struct Lane {
    next_seq: u64,
    head: Arc<Slot>,
    in_flight: u64,
}

/// The pipeline's part of the kernel state (under the kernel's lock).
#[derive(Debug, Default)]
pub(super) struct Pipe {
    next_ticket: u64,
    next_commit: u64,
    pub(super) in_flight: u64,
    drain_waiters: u64,
    /// Set by a failure; cleared when the pipeline has drained.
    failed: Option<String>,
    /// Records since the last CHECKPOINT, counting those reserved.
    since_checkpoint: u64,
    lanes: HashMap<String, Lane>,
    ready: BTreeMap<u64, Signed>,
}

impl Pipe {
    /// One record of `session` left the pipeline.
    fn leave_lane(&mut self, session: &str) {
        if let Some(l) = self.lanes.get_mut(session) {
            l.in_flight = l.in_flight.saturating_sub(1);
            if l.in_flight == 0 {
                self.lanes.remove(session);
            }
        }
    }
}

/// The INTENT's parent: none (a session's first record), known, or being signed.
#[derive(Debug)]
enum Prev {
    None,
    Known(Hash),
    Pending(Arc<Slot>),
}

/// A reserved decision: everything but the signatures.
#[derive(Debug)]
pub(super) struct Job {
    ticket: u64,
    prev: Prev,
    slot: Arc<Slot>,
    lamport: u64,
    time: u64,
    seq: u64,
    tool: String,
    call_kind: CallKind,
    args_hash: Hash,
    principal: String,
    session: String,
    call_id: Option<String>,
    policy_record: Option<Hash>,
    decision: guardian::Decision,
    /// The intent key (retries of an escalated call find it).
    key: Hash,
    /// The argument blob frame (name ‖ salt ‖ canonical arguments).
    blob: Vec<u8>,
    /// The ALLOW was counted in the evidence at reservation.
    counted: bool,
    /// A CHECKPOINT due by count right after this decision.
    checkpoint: Option<CheckpointSlot>,
}

/// A CHECKPOINT reserved after a decision: its clocks and sequence number in the
/// kernel's session `""`; signed when committed (its root covers the records before it).
#[derive(Debug)]
struct CheckpointSlot {
    lamport: u64,
    seq: u64,
    slot: Arc<Slot>,
}

/// What a proposal needs reserved (built by `evaluate` under the lock).
#[derive(Debug)]
pub(super) struct Reservation {
    pub(super) tool: String,
    pub(super) call_kind: CallKind,
    pub(super) args_hash: Hash,
    pub(super) principal: String,
    pub(super) session: String,
    pub(super) call_id: Option<String>,
    pub(super) decision: guardian::Decision,
    pub(super) key: Hash,
    pub(super) blob: Vec<u8>,
    pub(super) time: u64,
}

#[derive(Debug)]
struct Signed {
    job: Job,
    records: Result<[(Vec<u8>, Hash); 2], KernelError>,
    reply: Arc<Reply>,
}

impl Kernel {
    /// The lock, for a decision's reservation: waits while an operation that runs alone
    /// is waiting for the pipeline to drain (so that it gets its turn).
    pub(super) fn lock_reserve(&self) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        while st.pipe.drain_waiters > 0 {
            st = self.drained.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st
    }

    /// The lock with no decision in flight: for operations that write other records.
    pub(super) fn lock_drained(&self) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        st.pipe.drain_waiters = st.pipe.drain_waiters.saturating_add(1);
        while st.pipe.in_flight > 0 {
            st = self.drained.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.pipe.drain_waiters = st.pipe.drain_waiters.saturating_sub(1);
        if st.pipe.drain_waiters == 0 {
            // Reservations held back for us go on once we release the lock.
            self.drained.notify_all();
        }
        st
    }

    /// Why new decisions are refused for now, if they are.
    pub(super) fn pipeline_failure(st: &State) -> Option<String> {
        st.pipe.failed.clone()
    }

    /// Step 1: takes a ticket, clocks and sequence numbers; counts an ALLOW in the
    /// evidence. Under the lock.
    pub(super) fn reserve(&self, st: &mut State, r: Reservation) -> Job {
        let ticket = st.pipe.next_ticket;
        st.pipe.next_ticket = ticket.saturating_add(1);
        st.pipe.in_flight = st.pipe.in_flight.saturating_add(1);
        self.in_flight_hint
            .store(st.pipe.in_flight, core::sync::atomic::Ordering::Relaxed);
        let lamport = st.lamport.saturating_add(1);
        st.lamport = lamport.saturating_add(1);
        let slot = Arc::new(Slot::default());
        let (seq, prev) = match st.pipe.lanes.get(&r.session) {
            Some(l) => (l.next_seq, Prev::Pending(l.head.clone())),
            None => (
                st.seq.get(&r.session).copied().unwrap_or(0),
                st.heads.get(&r.session).map_or(Prev::None, |h| Prev::Known(*h)),
            ),
        };
        let lane = st.pipe.lanes.entry(r.session.clone()).or_insert_with(|| Lane {
            next_seq: seq,
            head: slot.clone(),
            in_flight: 0,
        });
        lane.next_seq = seq.saturating_add(2);
        lane.head = slot.clone();
        lane.in_flight = lane.in_flight.saturating_add(1);
        let counted = r.decision.verdict == Verdict::Allow;
        if counted {
            st.add_call(&r.principal, &r.session, &r.tool, r.time, false);
        }
        let checkpoint = self.reserve_checkpoint(st);
        Job {
            ticket,
            prev,
            slot,
            lamport,
            time: r.time,
            seq,
            policy_record: st.policies.get(&r.decision.policy).copied(),
            tool: r.tool,
            call_kind: r.call_kind,
            args_hash: r.args_hash,
            principal: r.principal,
            session: r.session,
            call_id: r.call_id,
            decision: r.decision,
            key: r.key,
            blob: r.blob,
            counted,
            checkpoint,
        }
    }

    /// Reserves a CHECKPOINT after the decision just reserved if one is due by count,
    /// so that Lamport clocks still count one per record over the whole stream. Not
    /// while a decision of the session `""` is in flight (its sequence numbers would
    /// interleave): the next decision takes it.
    fn reserve_checkpoint(&self, st: &mut State) -> Option<CheckpointSlot> {
        if st.pipe.in_flight == 1 {
            st.pipe.since_checkpoint = st.since_checkpoint;
        }
        st.pipe.since_checkpoint = st.pipe.since_checkpoint.saturating_add(2);
        if self.checkpoint_every == 0
            || st.pipe.since_checkpoint < self.checkpoint_every
            || st.pipe.lanes.contains_key("")
        {
            return None;
        }
        st.pipe.since_checkpoint = 0;
        st.lamport = st.lamport.saturating_add(1);
        let seq = st.seq.get("").copied().unwrap_or(0);
        let slot = Arc::new(Slot::default());
        st.pipe.lanes.insert(
            String::new(),
            Lane {
                next_seq: seq.saturating_add(1),
                head: slot.clone(),
                in_flight: 1,
            },
        );
        Some(CheckpointSlot {
            lamport: st.lamport,
            seq,
            slot,
        })
    }

    /// Steps 2 and 3 for a reserved decision; returns the answer and the durability
    /// tickets to wait for. Every path fills the job's slot and submits its ticket, so
    /// that neither a later decision of the session nor the commit order waits forever.
    pub(super) fn sign_and_commit(&self, job: Job) -> Result<(Answer, Tickets), KernelError> {
        let records = self.sign_job(&job);
        job.slot.fill(records.as_ref().ok().map(|r| r[1].1));
        let reply = Arc::new(Reply::default());
        {
            let mut st = self.lock();
            st.pipe.ready.insert(
                job.ticket,
                Signed {
                    job,
                    records,
                    reply: reply.clone(),
                },
            );
            self.commit_ready(&mut st);
        }
        reply.wait().map_err(KernelError::Sign)
    }

    /// Step 2: the INTENT (after its session's previous record) and the DECISION.
    fn sign_job(&self, job: &Job) -> Result<[(Vec<u8>, Hash); 2], KernelError> {
        let parent = match &job.prev {
            Prev::None => None,
            Prev::Known(h) => Some(*h),
            Prev::Pending(slot) => Some(
                slot.wait()
                    .ok_or_else(|| KernelError::Sign("an earlier record of this session was not written".into()))?,
            ),
        };
        let intent = RecordBuilder {
            kind: Kind::Intent,
            parents: parent.into_iter().collect(),
            lamport: job.lamport,
            time: job.time,
            principal: job.principal.clone(),
            session: job.session.clone(),
            seq: job.seq,
            body: body::intent(&job.tool, job.call_kind, &job.args_hash),
            ext: job.call_id.as_deref().map(call_id_ext),
        };
        let ib = sign_record(&intent, self.signer.as_ref()).map_err(|e| KernelError::Sign(e.to_string()))?;
        let ih = sha256(&ib);
        let d = &job.decision;
        let esc = d.escalation.as_ref().map(|e| Escalation {
            role: &e.role,
            quorum: e.quorum,
            not_before: e.not_before,
            expires: e.expires,
        });
        let decision = RecordBuilder {
            kind: Kind::Decision,
            parents: core::iter::once(ih).chain(job.policy_record).collect(),
            lamport: job.lamport.saturating_add(1),
            time: job.time,
            principal: job.principal.clone(),
            session: job.session.clone(),
            seq: job.seq.saturating_add(1),
            body: body::decision(d.verdict, &d.reason, &d.policy, esc.as_ref()),
            ext: None,
        };
        let db = sign_record(&decision, self.signer.as_ref()).map_err(|e| KernelError::Sign(e.to_string()))?;
        let dh = sha256(&db);
        Ok([(ib, ih), (db, dh)])
    }

    /// Step 3: commits every signed ticket that is next in order. Under the lock.
    fn commit_ready(&self, st: &mut State) {
        while let Some(s) = st.pipe.ready.remove(&st.pipe.next_commit) {
            st.pipe.next_commit = st.pipe.next_commit.saturating_add(1);
            let outcome = self.commit_job(st, s.job, s.records);
            s.reply.fill(outcome);
        }
    }

    fn commit_job(&self, st: &mut State, mut job: Job, records: Result<[(Vec<u8>, Hash); 2], KernelError>) -> Outcome {
        let committed = match (&st.pipe.failed, records) {
            (Some(f), _) => Err(format!("not written: an earlier decision failed ({f})")),
            (None, Err(e)) => Err(e.to_string()),
            (None, Ok([(ib, ih), (db, dh)])) => {
                let mut staged = st.stage();
                staged.records = vec![ib, db];
                staged.hashes = vec![ih, dh];
                staged.salted.push(core::mem::take(&mut job.blob));
                self.commit_counted(st, staged, true)
                    .map(|t| (ih, dh, t))
                    .map_err(|e| e.to_string())
            }
        };
        let outcome = match committed {
            Ok((intent, decision, tickets)) => {
                if let Some(e) = st.escalations.get_mut(&decision) {
                    e.key = job.key;
                    st.by_key.insert(job.key, decision);
                }
                let d = &job.decision;
                Ok((
                    Answer {
                        status: match d.verdict {
                            Verdict::Allow => Status::Allow,
                            Verdict::Deny => Status::Deny,
                            Verdict::Escalate => Status::Pending,
                        },
                        reason: d.reason.clone(),
                        rule: d.rule.clone(),
                        intent: Some(hexs(&intent)),
                        decision: Some(hexs(&decision)),
                        policy: Some(hexs(&d.policy)),
                        approval: self.pending_view(st, &decision),
                        durable: self.durable,
                        error: None,
                    },
                    tickets,
                ))
            }
            Err(e) => {
                st.pipe.failed.get_or_insert_with(|| e.clone());
                if job.counted {
                    st.remove_call(&job.principal, &job.session, &job.tool, job.time);
                }
                Err(e)
            }
        };
        st.pipe.leave_lane(&job.session);
        if let Some(c) = job.checkpoint {
            self.commit_checkpoint(st, c, job.time);
        }
        st.pipe.in_flight = st.pipe.in_flight.saturating_sub(1);
        self.in_flight_hint
            .store(st.pipe.in_flight, core::sync::atomic::Ordering::Relaxed);
        if st.pipe.in_flight == 0 {
            if st.pipe.failed.take().is_some() {
                // Clocks reserved by failed decisions were never used: continue from
                // the last record written.
                st.lamport = st.committed_lamport;
            }
            st.pipe.lanes.clear();
            // Only operations waiting in `lock_drained` wait for this (and count
            // themselves); reservations wait for them, and are woken there.
            if st.pipe.drain_waiters > 0 {
                self.drained.notify_all();
            }
        }
        outcome
    }

    /// Writes a reserved CHECKPOINT (unless a failure came first).
    fn commit_checkpoint(&self, st: &mut State, c: CheckpointSlot, time: u64) {
        let mut written = None;
        if st.pipe.failed.is_none() {
            let mut staged = st.stage();
            staged.time = time;
            staged.lamport = c.lamport.saturating_sub(1);
            let root = staged.merkle.root();
            let signed = staged.push_seq(
                self.signer.as_ref(),
                Kind::Checkpoint,
                body::checkpoint(staged.count, &root, &[]),
                "kernel",
                "",
                c.seq,
            );
            match signed.and_then(|h| self.commit_counted(st, staged, false).map(|_| h)) {
                Ok(h) => written = Some(h),
                Err(e) => {
                    st.pipe.failed.get_or_insert_with(|| format!("checkpoint: {e}"));
                }
            }
        }
        c.slot.fill(written);
        st.pipe.leave_lane("");
    }
}
