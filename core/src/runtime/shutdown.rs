//! Graceful shutdown: refuse new calls, let in-flight ones finish, release every worker, and
//! say when it is done.

use std::time::Instant;

use super::{Runtime, Timer, WKey};
use crate::event::Event;
use crate::io::{Outcome, Output, Unavailable};

impl Runtime {
    /// Starts shutting down: new calls and new workers are refused, queued calls get
    /// "unavailable", placeholders are released, busy workers drain. When nothing is left in
    /// flight, [`Event::ShutdownComplete`] is emitted; the shell may stop waiting earlier.
    pub fn begin_shutdown(&mut self, now: Instant) {
        self.advance(now);
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let retry_after = self.cfg.timeouts.retry_after;
        let mut waiting: Vec<_> =
            self.invs.iter().filter(|(_, inv)| !inv.is_sent()).map(|(i, _)| *i).collect();
        waiting.sort();
        for i in waiting {
            self.settle(i, Outcome::Unavailable { reason: Unavailable::ShuttingDown, retry_after });
        }
        let mut tickets: Vec<(u64, String)> = std::mem::take(&mut self.ticket_ids).into_iter().collect();
        tickets.sort();
        for (seq, id) in tickets {
            self.timers.cancel(Timer::Ticket(seq));
            if let Some(t) = self.tickets.remove(&id) {
                self.pools[t.pool].provisioning -= 1;
            }
            self.out.push_back(Output::Release {
                worker: crate::ids::WorkerId(id),
                reason: "the runtime is shutting down".into(),
            });
        }
        let mut workers: Vec<WKey> = self.workers.keys().copied().collect();
        workers.sort();
        for w in workers {
            self.drain(w, "the runtime is shutting down");
        }
        self.check_shutdown();
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    pub(super) fn check_shutdown(&mut self) {
        if self.shutting_down && !self.shutdown_reported && self.invs.is_empty() && self.workers.is_empty() {
            self.shutdown_reported = true;
            self.emit(Event::ShutdownComplete);
        }
    }
}
