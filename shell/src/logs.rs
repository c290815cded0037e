//! Live logs: worker `RpcLog` lines, attributed to their app, function, invocation and worker,
//! kept in a bounded ring per app and broadcast to followers (`switchboard logs APP --follow`).
//!
//! The driver publishes; it never waits for a reader. A follower that falls behind loses the
//! oldest lines (the broadcast channel drops them) and is told how many it missed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use switchboard_core::WorkerLog;
use tokio::sync::broadcast;

/// Lines kept per app for `logs APP` without `--follow`.
pub const RING: usize = 1000;
/// Lines a follower may fall behind before it loses some.
const CHANNEL: usize = 4096;

/// One worker log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Runtime-wide sequence number (increasing; gaps are lines of other apps).
    pub seq: u64,
    /// When the runtime received it (RFC 3339, UTC).
    pub time: String,
    /// The app.
    pub app: String,
    /// The function, when the line belongs to a known invocation.
    pub function: Option<String>,
    /// The invocation id, when the worker set one.
    pub invocation: Option<String>,
    /// The worker that sent it.
    pub worker: String,
    /// `trace`, `debug`, `information`, `warning`, `error`, `critical` or `none`.
    pub level: &'static str,
    /// The logger's category (e.g. `root`, or the worker's own).
    pub category: String,
    /// True for the worker's own (system) logs, false for the function's.
    pub system: bool,
    /// The message.
    pub message: String,
}

/// The wire level as a word.
pub fn level_name(level: i32) -> &'static str {
    match level {
        0 => "trace",
        1 => "debug",
        2 => "information",
        3 => "warning",
        4 => "error",
        5 => "critical",
        _ => "none",
    }
}

/// The runtime's log hub: cheap to clone, shared by the driver (which publishes) and the admin
/// API (which reads and follows).
#[derive(Debug, Clone)]
pub struct LogHub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    seq: AtomicU64,
    rings: Mutex<HashMap<String, VecDeque<Arc<LogLine>>>>,
    tx: broadcast::Sender<Arc<LogLine>>,
}

impl Default for LogHub {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CHANNEL);
        LogHub { inner: Arc::new(Inner { seq: AtomicU64::new(0), rings: Mutex::default(), tx }) }
    }
}

/// A follower of one app's lines.
#[derive(Debug)]
pub struct Follower {
    app: String,
    system: bool,
    after: u64,
    rx: broadcast::Receiver<Arc<LogLine>>,
}

/// What a follower gets next.
#[derive(Debug)]
pub enum Next {
    /// A line.
    Line(Arc<LogLine>),
    /// The follower fell behind and this many lines (of all apps) were dropped for it.
    Lagged(u64),
    /// The runtime stopped.
    Closed,
}

impl LogHub {
    /// Records a worker's line. Lines of workers not bound to an app (placeholders) are not
    /// kept: they belong to no tenant.
    pub fn publish(&self, log: &WorkerLog) {
        let Some(app) = log.app.as_ref().filter(|a| !a.is_empty()) else { return };
        let line = Arc::new(LogLine {
            seq: self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            app: app.clone(),
            function: log.function.clone().filter(|f| !f.is_empty()),
            invocation: log.invocation.clone().filter(|i| !i.is_empty()),
            worker: log.worker.to_string(),
            level: level_name(log.level),
            category: log.category.clone(),
            system: log.log_category == 1,
            message: log.message.clone(),
        });
        {
            let mut rings = self.inner.rings.lock().expect("no panics while holding the log ring lock");
            let ring = rings.entry(app.clone()).or_default();
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(Arc::clone(&line));
        }
        // No receivers is fine: nobody follows.
        let _ = self.inner.tx.send(line);
    }

    /// Drops an app's ring (the app was removed): memory stays bounded by the deployed apps.
    pub fn forget_app(&self, app: &str) {
        self.inner.rings.lock().expect("no panics while holding the log ring lock").remove(app);
    }

    /// The app's last `n` lines, oldest first; system lines only if `system`.
    pub fn recent(&self, app: &str, n: usize, system: bool) -> Vec<Arc<LogLine>> {
        let rings = self.inner.rings.lock().expect("no panics while holding the log ring lock");
        let Some(ring) = rings.get(app) else { return Vec::new() };
        let mut lines: Vec<Arc<LogLine>> =
            ring.iter().rev().filter(|l| system || !l.system).take(n).cloned().collect();
        lines.reverse();
        lines
    }

    /// Follows an app: the last `backlog` lines, then every new one. No line is given twice.
    pub fn follow(&self, app: &str, backlog: usize, system: bool) -> (Vec<Arc<LogLine>>, Follower) {
        // Subscribe before reading the ring so that nothing falls between the two; lines in
        // both are skipped by sequence number.
        let rx = self.inner.tx.subscribe();
        let recent = self.recent(app, usize::MAX, system);
        let after = recent.last().map_or(0, |l| l.seq);
        let skip = recent.len().saturating_sub(backlog);
        let backlog = recent.into_iter().skip(skip).collect();
        (backlog, Follower { app: app.to_owned(), system, after, rx })
    }
}

impl Follower {
    /// Waits for the next line of this follower's app.
    pub async fn next(&mut self) -> Next {
        loop {
            match self.rx.recv().await {
                Ok(line) => {
                    if line.app == self.app && line.seq > self.after && (self.system || !line.system) {
                        return Next::Line(line);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => return Next::Lagged(n),
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use switchboard_core::WorkerId;

    use super::*;

    fn log(app: &str, message: &str, system: bool) -> WorkerLog {
        WorkerLog {
            worker: WorkerId("w1".into()),
            app: Some(app.into()),
            function: Some("f".into()),
            invocation: Some("inv".into()),
            level: 2,
            category: "root".into(),
            log_category: i32::from(system),
            message: message.into(),
        }
    }

    #[test]
    fn rings_are_per_app_and_bounded() {
        let hub = LogHub::default();
        for i in 0..RING + 5 {
            hub.publish(&log("a", &format!("line {i}"), false));
        }
        hub.publish(&log("b", "other", false));
        let a = hub.recent("a", usize::MAX, false);
        assert_eq!(a.len(), RING);
        assert_eq!(a[0].message, "line 5");
        assert_eq!(
            hub.recent("a", 2, false).iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            [format!("line {}", RING + 3), format!("line {}", RING + 4)]
        );
        assert_eq!(hub.recent("b", 10, false).len(), 1);
        hub.forget_app("a");
        assert!(hub.recent("a", 10, false).is_empty());
    }

    #[test]
    fn placeholder_lines_and_system_lines_are_filtered() {
        let hub = LogHub::default();
        let mut placeholder = log("a", "x", false);
        placeholder.app = None;
        hub.publish(&placeholder);
        hub.publish(&log("a", "sys", true));
        hub.publish(&log("a", "user", false));
        assert_eq!(hub.recent("a", 10, false).len(), 1);
        assert_eq!(hub.recent("a", 10, true).len(), 2);
    }

    #[test]
    fn followers_get_the_backlog_then_new_lines_of_their_app_once() {
        let hub = LogHub::default();
        hub.publish(&log("a", "old 1", false));
        hub.publish(&log("a", "old 2", false));
        let (backlog, mut follower) = hub.follow("a", 1, false);
        assert_eq!(backlog.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["old 2"]);
        hub.publish(&log("b", "not mine", false));
        hub.publish(&log("a", "new", false));
        let next = futures_util::FutureExt::now_or_never(follower.next()).expect("ready");
        let Next::Line(line) = next else { panic!("{next:?}") };
        assert_eq!(line.message, "new");
        assert_eq!(line.function.as_deref(), Some("f"));
        assert!(futures_util::FutureExt::now_or_never(follower.next()).is_none(), "nothing more");
    }

    #[test]
    fn a_slow_follower_is_told_it_lagged() {
        let hub = LogHub::default();
        let (_, mut follower) = hub.follow("a", 0, false);
        for i in 0..CHANNEL + 10 {
            hub.publish(&log("a", &format!("{i}"), false));
        }
        let next = futures_util::FutureExt::now_or_never(follower.next()).expect("ready");
        assert!(matches!(next, Next::Lagged(10)), "{next:?}");
    }
}
