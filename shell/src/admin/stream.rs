//! `GET /v1/apps/{name}/logs?follow=true`: an app's log lines as server-sent events.
//!
//! ```text
//! event: log            one line; data is the line as JSON, id its sequence number
//! event: lagged         the reader fell behind; data {"skipped": N} lines were dropped for it
//! event: end            the runtime is stopping; data {"reason": ...}
//! : keepalive           every 15 s without lines (finds readers that went away)
//! ```

use std::convert::Infallible;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{Either, select};
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::json;

use crate::logs::{Follower, LogLine, Next};
use crate::serve::{Stop, stopped};

/// How often an idle stream sends a comment.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// A clock for the stream's heartbeat: the shell's runtime timer.
pub(crate) type Sleeper = Arc<dyn Fn(Instant) -> Pin<Box<dyn hyper::rt::Sleep>> + Send + Sync>;

struct State {
    backlog: std::vec::IntoIter<Arc<LogLine>>,
    follower: Follower,
    stop: Stop,
    sleep: Sleeper,
    done: bool,
}

/// The event stream: the backlog, then live lines until the runtime stops.
pub(super) fn sse(
    backlog: Vec<Arc<LogLine>>,
    follower: Follower,
    stop: Stop,
    sleep: Sleeper,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static> {
    let state = State { backlog: backlog.into_iter(), follower, stop, sleep, done: false };
    StreamBody::new(futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(line) = st.backlog.next() {
            return Some((Ok(Frame::data(log_event(&line))), st));
        }
        let event = {
            let next = pin!(st.follower.next());
            let tick = (st.sleep)(Instant::now() + HEARTBEAT);
            let stop = pin!(stopped(st.stop.clone()));
            match select(next, select(tick, stop)).await {
                Either::Left((Next::Line(line), _)) => log_event(&line),
                Either::Left((Next::Lagged(skipped), _)) => {
                    event("lagged", &json!({ "skipped": skipped }).to_string(), None)
                }
                Either::Left((Next::Closed, _)) | Either::Right((Either::Right(_), _)) => {
                    st.done = true;
                    event("end", &json!({ "reason": "the runtime is shutting down" }).to_string(), None)
                }
                Either::Right((Either::Left(_), _)) => Bytes::from_static(b": keepalive\n\n"),
            }
        };
        Some((Ok(Frame::data(event)), st))
    }))
}

fn log_event(line: &LogLine) -> Bytes {
    let data = serde_json::to_string(line).expect("log lines serialize");
    event("log", &data, Some(line.seq))
}

/// One SSE event. `data` is single-line JSON (serde_json escapes newlines).
fn event(name: &str, data: &str, id: Option<u64>) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}
