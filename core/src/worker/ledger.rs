//! The worker's record of invocations: what runs, what was answered while disconnected, what
//! was sent but not yet confirmed, and which answered ids to remember so that the runtime's
//! re-sends are never run twice. Every part is bounded.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use switchboard_proto::rpc::InvocationResponse;

/// What the worker knows about an invocation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    /// The handler is running it.
    Running,
    /// Answered while disconnected; waiting for a resume.
    Buffered,
    /// Its response was written to a stream and is not confirmed yet.
    Sent,
    /// Its response reached the runtime (or is too old to tell).
    Delivered,
    /// Its response was dropped because the buffer was full.
    Dropped,
}

/// A response written to a stream.
#[derive(Debug)]
struct Sent {
    resp: InvocationResponse,
    /// The stream it was written to.
    stream: u64,
    /// Its place in the order of all responses written.
    seq: u64,
}

/// Invocations by id. Nothing here is iterated into an output in hash order.
#[derive(Debug)]
pub(super) struct Ledger {
    known: FxHashMap<String, Known>,
    running: usize,
    /// Completion order.
    buffered: VecDeque<InvocationResponse>,
    /// Write order (increasing `seq`).
    sent: VecDeque<Sent>,
    /// Ids `Delivered` or `Dropped`, oldest first.
    remembered: VecDeque<String>,
    next_seq: u64,
    limit: usize,
}

impl Ledger {
    pub(super) fn new(limit: usize) -> Self {
        Ledger {
            known: FxHashMap::default(),
            running: 0,
            buffered: VecDeque::new(),
            sent: VecDeque::new(),
            remembered: VecDeque::new(),
            next_seq: 0,
            limit: limit.max(1),
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<Known> {
        self.known.get(id).copied()
    }

    pub(super) fn running(&self) -> usize {
        self.running
    }

    pub(super) fn buffered(&self) -> usize {
        self.buffered.len()
    }

    pub(super) fn unconfirmed(&self) -> usize {
        self.sent.len()
    }

    /// The sequence number the next written response will get.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub(super) fn start(&mut self, id: String) {
        self.known.insert(id, Known::Running);
        self.running += 1;
    }

    /// Ends a running invocation; false if it was not running.
    pub(super) fn finish(&mut self, id: &str) -> bool {
        if self.get(id) != Some(Known::Running) {
            return false;
        }
        self.known.remove(id);
        self.running -= 1;
        true
    }

    /// Keeps a response completed while disconnected; returns the id of the oldest one,
    /// dropped to make room when the buffer is full.
    pub(super) fn buffer(&mut self, resp: InvocationResponse) -> Option<String> {
        let mut dropped = None;
        if self.buffered.len() >= self.limit
            && let Some(old) = self.buffered.pop_front()
        {
            self.remember(old.invocation_id.clone(), Known::Dropped);
            dropped = Some(old.invocation_id);
        }
        self.known.insert(resp.invocation_id.clone(), Known::Buffered);
        self.buffered.push_back(resp);
        dropped
    }

    /// Takes the buffered responses, in completion order, to be written.
    pub(super) fn take_buffered(&mut self) -> VecDeque<InvocationResponse> {
        std::mem::take(&mut self.buffered)
    }

    /// Records a response written to `stream`.
    pub(super) fn record_sent(&mut self, resp: InvocationResponse, stream: u64) {
        if self.sent.len() >= self.limit
            && let Some(old) = self.sent.pop_front()
        {
            // Too many unconfirmed (a runtime that never echoes): assume the oldest arrived.
            self.remember(old.resp.invocation_id, Known::Delivered);
        }
        self.known.insert(resp.invocation_id.clone(), Known::Sent);
        self.sent.push_back(Sent { resp, stream, seq: self.next_seq });
        self.next_seq += 1;
    }

    /// The response for `id` if it was written to a stream older than `stream` (and so may
    /// have been lost with it), taken out to be written again.
    pub(super) fn take_for_resend(&mut self, id: &str, stream: u64) -> Option<InvocationResponse> {
        let pos = self.sent.iter().position(|s| s.resp.invocation_id == id && s.stream < stream)?;
        self.sent.remove(pos).map(|s| s.resp)
    }

    /// Every response written before sequence number `seq` reached the runtime.
    pub(super) fn confirm_below(&mut self, seq: u64) {
        while self.sent.front().is_some_and(|s| s.seq < seq) {
            let s = self.sent.pop_front().expect("front exists");
            self.remember(s.resp.invocation_id, Known::Delivered);
        }
    }

    fn remember(&mut self, id: String, status: Known) {
        if self.remembered.len() >= self.limit
            && let Some(old) = self.remembered.pop_front()
            && matches!(self.get(&old), Some(Known::Delivered | Known::Dropped))
        {
            self.known.remove(&old);
        }
        self.known.insert(id.clone(), status);
        self.remembered.push_back(id);
    }

    /// Forgets everything (the slot is lost); returns (running, buffered) as they were.
    pub(super) fn reset(&mut self) -> (usize, usize) {
        let counts = (self.running, self.buffered.len());
        let next_seq = self.next_seq;
        *self = Ledger::new(self.limit);
        self.next_seq = next_seq;
        counts
    }

    /// Whether anything is running or owed.
    pub(super) fn holds_work(&self) -> bool {
        self.running > 0 || !self.buffered.is_empty() || !self.sent.is_empty()
    }
}
