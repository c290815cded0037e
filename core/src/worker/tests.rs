//! Tests of the worker core: unit tests that script the runtime's side message by message,
//! and end-to-end tests (`e2e`) that wire real [`crate::Runtime`]s to workers through the
//! in-memory network in `net`.

mod e2e;
mod net;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use switchboard_proto::Content;
use switchboard_proto::rpc::{
    FunctionEnvironmentReloadRequest, FunctionLoadRequest, InvocationCancel, InvocationRequest,
    InvocationResponse, RpcFunctionMetadata, StatusResult, StreamingMessage, WorkerHeartbeat,
    WorkerInitRequest, WorkerTerminate, status_result,
};

use super::*;
use crate::ConnMeta;
use crate::runtime::cap;
use crate::testkit::{epoch, ok};

/// One worker driven by hand.
struct W {
    w: Worker,
    now: Instant,
}

fn config() -> WorkerConfig {
    WorkerConfig { seed: [5; 32], join_token: Some("join".into()), ..WorkerConfig::new("w-1") }
}

impl W {
    fn new(cfg: WorkerConfig) -> (W, Vec<WorkerOutput>) {
        let now = epoch();
        let mut w = W { w: Worker::new(cfg, now), now };
        let outs = w.drain();
        (w, outs)
    }

    fn drain(&mut self) -> Vec<WorkerOutput> {
        std::iter::from_fn(|| self.w.poll_output()).collect()
    }

    fn input(&mut self, input: WorkerInput) -> Vec<WorkerOutput> {
        self.w.handle_input(self.now, input);
        self.drain()
    }

    fn msg(&mut self, content: Content) -> Vec<WorkerOutput> {
        let msg = StreamingMessage { request_id: "rt-req".into(), content: Some(content) };
        self.input(WorkerInput::Message(Box::new(msg)))
    }

    /// Advances by `d`, firing every deadline on the way in order.
    fn advance(&mut self, d: Duration) -> Vec<WorkerOutput> {
        let end = self.now + d;
        let mut outs = Vec::new();
        while let Some(at) = self.w.poll_timeout().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            self.w.handle_timeout(self.now);
            outs.extend(self.drain());
        }
        self.now = end;
        outs
    }

    /// Jumps to the next deadline and fires it.
    fn next_timeout(&mut self) -> Vec<WorkerOutput> {
        let at = self.w.poll_timeout().expect("a deadline");
        self.now = self.now.max(at);
        self.w.handle_timeout(self.now);
        self.drain()
    }

    /// Connected, then the runtime's `WorkerInitRequest` with these capabilities.
    fn register_with(&mut self, caps: &[(&str, &str)]) -> Vec<WorkerOutput> {
        let mut outs = self.input(WorkerInput::Connected);
        let capabilities = caps.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        outs.extend(
            self.msg(Content::WorkerInitRequest(WorkerInitRequest { capabilities, ..Default::default() })),
        );
        outs
    }

    /// Registers with a connection-mode runtime (resume token `tok`).
    fn register(&mut self, resumed: bool) -> Vec<WorkerOutput> {
        let resumed = if resumed { "true" } else { "false" };
        self.register_with(&[(cap::RESUME_TOKEN, "tok"), (cap::RESUMED, resumed)])
    }

    /// Env reload plus one load per function id, all successful.
    fn specialize(&mut self, functions: &[&str]) {
        let outs = self.msg(reload_request());
        assert!(outs.iter().any(|o| matches!(o, WorkerOutput::ReloadEnvironment { .. })), "{outs:?}");
        let outs = self.input(WorkerInput::EnvReloaded { result: Ok(()) });
        assert_eq!(statuses(&outs), vec![1]);
        for f in functions {
            let outs = self.msg(load_request(f));
            assert!(outs.iter().any(|o| matches!(o, WorkerOutput::LoadFunction { .. })), "{outs:?}");
            let outs = self.input(WorkerInput::FunctionLoaded { function_id: (*f).into(), result: Ok(()) });
            assert_eq!(statuses(&outs), vec![1]);
        }
    }

    /// Loses the stream (the shell reports it) and redials after the backoff.
    fn reconnect(&mut self) -> Vec<WorkerOutput> {
        let mut outs = self.input(WorkerInput::Disconnected { reason: "reset".into() });
        outs.extend(self.next_timeout());
        outs
    }
}

fn reload_request() -> Content {
    Content::FunctionEnvironmentReloadRequest(FunctionEnvironmentReloadRequest {
        environment_variables: BTreeMap::from([("A".into(), "1".into())]),
        function_app_directory: "/apps/a".into(),
    })
}

fn load_request(function_id: &str) -> Content {
    Content::FunctionLoadRequest(FunctionLoadRequest {
        function_id: function_id.into(),
        metadata: Some(RpcFunctionMetadata { name: function_id.into(), ..Default::default() }),
        managed_dependency_enabled: false,
    })
}

fn invocation(id: &str, function_id: &str) -> Content {
    Content::InvocationRequest(InvocationRequest {
        invocation_id: id.into(),
        function_id: function_id.into(),
        ..Default::default()
    })
}

fn heartbeat() -> Content {
    Content::WorkerHeartbeat(WorkerHeartbeat {})
}

fn done(id: &str) -> WorkerInput {
    let response = InvocationResponse { invocation_id: id.into(), result: ok(), ..Default::default() };
    WorkerInput::InvocationDone { response: Box::new(response) }
}

fn sent(outs: &[WorkerOutput]) -> Vec<&Content> {
    outs.iter()
        .filter_map(|o| match o {
            WorkerOutput::Send(m) => m.content.as_ref(),
            _ => None,
        })
        .collect()
}

fn events(outs: &[WorkerOutput]) -> Vec<&WorkerEvent> {
    outs.iter()
        .filter_map(|o| match o {
            WorkerOutput::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn connects(outs: &[WorkerOutput]) -> Vec<&ConnMeta> {
    outs.iter()
        .filter_map(|o| match o {
            WorkerOutput::Connect { meta } => Some(meta),
            _ => None,
        })
        .collect()
}

/// Invocation ids of the responses sent, in order.
fn responses(outs: &[WorkerOutput]) -> Vec<String> {
    sent(outs)
        .into_iter()
        .filter_map(|c| match c {
            Content::InvocationResponse(r) => Some(r.invocation_id.clone()),
            _ => None,
        })
        .collect()
}

fn invoked(outs: &[WorkerOutput]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            WorkerOutput::Invoke(r) => Some(r.invocation_id.clone()),
            _ => None,
        })
        .collect()
}

fn heartbeats(outs: &[WorkerOutput]) -> usize {
    sent(outs).iter().filter(|c| matches!(c, Content::WorkerHeartbeat(_))).count()
}

/// Status codes of every `StatusResult` the worker sent (env reload, load, invocation).
fn statuses(outs: &[WorkerOutput]) -> Vec<i32> {
    sent(outs).into_iter().filter_map(|c| result_of(c).map(|r| r.status)).collect()
}

fn result_of(c: &Content) -> Option<&StatusResult> {
    match c {
        Content::FunctionEnvironmentReloadResponse(r) => r.result.as_ref(),
        Content::FunctionLoadResponse(r) => r.result.as_ref(),
        Content::InvocationResponse(r) => r.result.as_ref(),
        Content::FunctionMetadataResponse(r) => r.result.as_ref(),
        _ => None,
    }
}

fn failure_message(c: &Content) -> String {
    let r = result_of(c).expect("a result");
    assert_eq!(r.status, status_result::Status::Failure as i32, "{c:?}");
    r.exception.as_ref().map(|e| e.message.clone()).unwrap_or_default()
}

fn exit_of(outs: &[WorkerOutput]) -> Option<(i32, &str)> {
    outs.iter().find_map(|o| match o {
        WorkerOutput::Exit { code, reason } => Some((*code, reason.as_str())),
        _ => None,
    })
}

/// A registered worker specialized with function `f`.
fn ready() -> W {
    let (mut w, _) = W::new(config());
    w.register(false);
    w.specialize(&["f"]);
    w
}

// ---- connecting and registering ----

#[test]
fn dials_at_once_with_the_join_token_and_no_resume_token() {
    let (w, outs) = W::new(config());
    assert_eq!(connects(&outs), vec![&ConnMeta { join_token: Some("join".into()), resume_token: None }]);
    assert!(!w.w.is_registered());
    assert_eq!(w.w.poll_timeout(), Some(w.now + Duration::from_secs(5)), "connect timeout armed");
}

#[test]
fn handshake_sends_start_stream_then_answers_init_with_capabilities() {
    let (mut w, _) = W::new(WorkerConfig {
        capabilities: BTreeMap::from([(cap::CONCURRENCY.to_owned(), "8".to_owned())]),
        ..config()
    });
    let outs = w.input(WorkerInput::Connected);
    assert!(matches!(sent(&outs)[..], [Content::StartStream(s)] if s.worker_id == "w-1"), "{outs:?}");
    let outs = w.msg(Content::WorkerInitRequest(WorkerInitRequest {
        capabilities: BTreeMap::from([(cap::RESUME_TOKEN.to_owned(), "tok".to_owned())]),
        ..Default::default()
    }));
    let Some(Content::WorkerInitResponse(init)) = sent(&outs).first().copied() else { panic!("{outs:?}") };
    assert_eq!(init.result.as_ref().map(|r| r.status), Some(status_result::Status::Success as i32));
    let caps = &init.capabilities;
    assert_eq!(caps[cap::HEARTBEAT_MS], "500");
    assert_eq!(caps[cap::CONCURRENCY], "8");
    for key in [
        cap::RESUME,
        "HandlesWorkerTerminateMessage",
        "HandlesInvocationCancelMessage",
        "WorkerStatus",
        "RawHttpBodyBytes",
        "RpcHttpTriggerMetadataRemoved",
        "TypedDataCollection",
    ] {
        assert_eq!(caps[key], "true", "{key}");
    }
    assert!(events(&outs).contains(&&WorkerEvent::Registered));
    assert!(w.w.is_registered());
}

#[test]
fn connect_timeout_counts_as_a_failure_and_redials() {
    let (mut w, _) = W::new(config());
    let outs = w.advance(Duration::from_secs(5));
    assert!(matches!(outs[0], WorkerOutput::CloseStream), "the hanging dial is aborted: {outs:?}");
    assert!(events(&outs).iter().any(|e| matches!(e, WorkerEvent::ConnectFailed { .. })));
    assert!(events(&outs).iter().any(|e| matches!(e, WorkerEvent::Reconnecting { attempt: 1, .. })));
    let outs = w.next_timeout();
    assert_eq!(connects(&outs).len(), 1, "redialed after the backoff");
}

#[test]
fn backoff_doubles_to_its_cap_with_bounded_jitter_and_resets_on_registration() {
    let (mut w, _) = W::new(config());
    let mut delays = Vec::new();
    for _ in 0..9 {
        let outs = w.input(WorkerInput::ConnectFailed { error: "refused".into() });
        let after = events(&outs)
            .iter()
            .find_map(|e| match e {
                WorkerEvent::Reconnecting { after, .. } => Some(*after),
                _ => None,
            })
            .expect("a redial is scheduled");
        delays.push(after);
        let outs = w.next_timeout();
        assert_eq!(connects(&outs).len(), 1);
    }
    let base = [100u64, 200, 400, 800, 1600, 3200, 5000, 5000, 5000];
    for (d, b) in delays.iter().zip(base) {
        let b = Duration::from_millis(b);
        assert!(*d >= b * 4 / 5 && *d <= b * 6 / 5, "{d:?} not within 20% of {b:?}");
    }
    assert!(delays.windows(2).any(|p| p[0] != p[1] * 2 && p[1] != p[0] * 2), "jittered: {delays:?}");
    // A registration resets the backoff.
    w.register(false);
    let outs = w.input(WorkerInput::Disconnected { reason: "gone".into() });
    assert!(events(&outs).iter().any(|e| matches!(
        e,
        WorkerEvent::Reconnecting { attempt: 1, after } if *after <= Duration::from_millis(120)
    )));
}

#[test]
fn jitter_comes_from_the_seed() {
    fn delays(seed: u8) -> Vec<WorkerOutput> {
        let (mut w, _) = W::new(WorkerConfig { seed: [seed; 32], ..config() });
        let mut all = Vec::new();
        for _ in 0..5 {
            all.extend(w.input(WorkerInput::ConnectFailed { error: "refused".into() }));
            all.extend(w.next_timeout());
        }
        all
    }
    assert_eq!(format!("{:?}", delays(1)), format!("{:?}", delays(1)));
    assert_ne!(format!("{:?}", delays(1)), format!("{:?}", delays(2)));
}

#[test]
fn reconnects_present_the_resume_token_with_the_join_token() {
    let (mut w, _) = W::new(config());
    w.register(false);
    let outs = w.reconnect();
    let meta = ConnMeta { join_token: Some("join".into()), resume_token: Some("tok".into()) };
    assert_eq!(connects(&outs), vec![&meta]);
}

#[test]
fn an_unasked_connected_is_closed_and_a_stray_failure_ignored() {
    let (mut w, _) = W::new(config());
    let _ = w.input(WorkerInput::ConnectFailed { error: "refused".into() });
    let outs = w.input(WorkerInput::Connected); // waiting out the backoff: nobody asked
    assert!(matches!(
        outs[..],
        [WorkerOutput::Event(WorkerEvent::Unexpected { .. }), WorkerOutput::CloseStream]
    ));
    let _ = w.next_timeout();
    w.register(false);
    let outs = w.input(WorkerInput::Connected);
    assert!(
        matches!(outs[..], [WorkerOutput::Event(WorkerEvent::Unexpected { .. })]),
        "the live stream stays"
    );
    let outs = w.input(WorkerInput::ConnectFailed { error: "late".into() });
    assert!(matches!(events(&outs)[..], [WorkerEvent::Unexpected { .. }]));
    assert!(w.w.is_registered(), "the live stream is untouched");
}

// ---- heartbeats and silence ----

#[test]
fn heartbeats_every_interval_while_registered_only() {
    let (mut w, _) = W::new(config());
    let outs = w.input(WorkerInput::Connected);
    assert_eq!(heartbeats(&outs), 0);
    w.register_with(&[(cap::RESUME_TOKEN, "tok")]);
    let mut count = 0;
    for _ in 0..6 {
        let outs = w.advance(Duration::from_millis(250));
        count += heartbeats(&outs);
        let _ = w.msg(heartbeat()); // the runtime echoes
    }
    assert_eq!(count, 3, "one per 500 ms over 1.5 s");
}

#[test]
fn a_silent_runtime_is_presumed_dead() {
    let (mut w, _) = W::new(config());
    w.register(false);
    let outs = w.advance(Duration::from_millis(1999));
    assert!(!outs.iter().any(|o| matches!(o, WorkerOutput::CloseStream)));
    let outs = w.advance(Duration::from_millis(1));
    assert!(outs.iter().any(|o| matches!(o, WorkerOutput::CloseStream)), "{outs:?}");
    assert!(
        events(&outs)
            .iter()
            .any(|e| matches!(e, WorkerEvent::Disconnected { reason } if reason.contains("no message")))
    );
    assert!(events(&outs).iter().any(|e| matches!(e, WorkerEvent::Reconnecting { .. })));
    assert!(!w.w.is_registered());
}

#[test]
fn heartbeat_echoes_keep_the_stream_alive() {
    let (mut w, _) = W::new(config());
    w.register(false);
    for _ in 0..40 {
        let outs = w.advance(Duration::from_millis(250));
        assert!(!outs.iter().any(|o| matches!(o, WorkerOutput::CloseStream)), "{outs:?}");
        for _ in 0..heartbeats(&outs) {
            let _ = w.msg(heartbeat());
        }
    }
    assert!(w.w.is_registered());
}

#[test]
fn a_runtime_that_does_not_speak_connection_mode_is_not_watched_for_silence() {
    let (mut w, _) = W::new(config());
    w.register_with(&[]); // no resume token: a host that neither resumes nor echoes
    let outs = w.advance(Duration::from_secs(60));
    assert!(!outs.iter().any(|o| matches!(o, WorkerOutput::CloseStream)));
    assert!(heartbeats(&outs) > 0, "it still heartbeats");
    let outs = w.reconnect();
    assert_eq!(connects(&outs)[0].resume_token, None, "no token to present");
}

#[test]
fn a_runtime_that_never_answers_start_stream_is_presumed_dead() {
    let (mut w, _) = W::new(config());
    let _ = w.input(WorkerInput::Connected);
    let outs = w.advance(Duration::from_secs(2));
    assert!(outs.iter().any(|o| matches!(o, WorkerOutput::CloseStream)), "{outs:?}");
}

// ---- specialization and requests ----

#[test]
fn specialization_round_trip() {
    let (mut w, _) = W::new(config());
    w.register(false);
    let outs = w.msg(reload_request());
    assert!(matches!(
        &outs[..],
        [WorkerOutput::ReloadEnvironment { environment, app_directory }]
            if environment["A"] == "1" && app_directory == "/apps/a"
    ));
    let outs = w.input(WorkerInput::EnvReloaded { result: Ok(()) });
    assert!(matches!(sent(&outs)[..], [Content::FunctionEnvironmentReloadResponse(_)]));
    assert_eq!(statuses(&outs), vec![status_result::Status::Success as i32]);
    let outs = w.msg(load_request("f1"));
    assert!(
        matches!(&outs[..], [WorkerOutput::LoadFunction { function_id, metadata }] if function_id == "f1" && metadata.name == "f1")
    );
    let outs = w.input(WorkerInput::FunctionLoaded { function_id: "f1".into(), result: Ok(()) });
    assert!(matches!(sent(&outs)[..], [Content::FunctionLoadResponse(r)] if r.function_id == "f1"));
    assert_eq!(statuses(&outs), vec![1]);
}

#[test]
fn handler_failures_are_reported_to_the_runtime() {
    let (mut w, _) = W::new(config());
    w.register(false);
    let _ = w.msg(reload_request());
    let outs = w.input(WorkerInput::EnvReloaded { result: Err("handler exited with 3".into()) });
    assert_eq!(failure_message(sent(&outs)[0]), "handler exited with 3");

    let mut w = ready();
    let _ = w.msg(load_request("g"));
    let outs = w
        .input(WorkerInput::FunctionLoaded { function_id: "g".into(), result: Err("no such script".into()) });
    assert_eq!(failure_message(sent(&outs)[0]), "no such script");
}

#[test]
fn load_before_env_reload_is_answered_with_a_failure() {
    let (mut w, _) = W::new(config());
    w.register(false);
    let outs = w.msg(load_request("f"));
    assert!(failure_message(sent(&outs)[0]).contains("before"), "{outs:?}");
    assert!(events(&outs).iter().any(|e| matches!(e, WorkerEvent::Unexpected { .. })));
    assert!(!outs.iter().any(|o| matches!(o, WorkerOutput::LoadFunction { .. })));
}

#[test]
fn specialization_is_one_way() {
    let mut w = ready();
    let outs = w.msg(reload_request());
    assert!(failure_message(sent(&outs)[0]).contains("already specialized"));
    assert!(!outs.iter().any(|o| matches!(o, WorkerOutput::ReloadEnvironment { .. })));
}

#[test]
fn metadata_status_and_warmup_requests_are_answered() {
    let (mut w, _) = W::new(config());
    w.register(false);
    let outs = w.msg(Content::FunctionsMetadataRequest(Default::default()));
    assert!(matches!(
        sent(&outs)[..],
        [Content::FunctionMetadataResponse(r)] if r.use_default_metadata_indexing && r.function_metadata_results.is_empty()
    ));
    assert_eq!(statuses(&outs), vec![1]);
    let outs = w.msg(Content::WorkerStatusRequest(Default::default()));
    assert!(matches!(sent(&outs)[..], [Content::WorkerStatusResponse(_)]));
    let outs = w.msg(Content::WorkerWarmupRequest(Default::default()));
    assert!(matches!(sent(&outs)[..], [Content::WorkerWarmupResponse(_)]));
    // Replies carry the request id of what they answer.
    let Some(WorkerOutput::Send(m)) = outs.first() else { panic!() };
    assert_eq!(m.request_id, "rt-req");
}

#[test]
fn odd_messages_are_reported_and_ignored() {
    let (mut w, _) = W::new(config());
    let _ = w.input(WorkerInput::Connected);
    let outs = w.msg(reload_request());
    assert!(
        matches!(outs[..], [WorkerOutput::Event(WorkerEvent::Unexpected { .. })]),
        "before init: {outs:?}"
    );
    w.register_with(&[(cap::RESUME_TOKEN, "tok")]);
    for odd in [
        StreamingMessage { request_id: String::new(), content: None },
        StreamingMessage {
            request_id: String::new(),
            content: Some(Content::InvocationResponse(Default::default())),
        },
        StreamingMessage {
            request_id: String::new(),
            content: Some(Content::StartStream(Default::default())),
        },
        StreamingMessage {
            request_id: String::new(),
            content: Some(Content::WorkerInitRequest(Default::default())),
        },
        StreamingMessage { request_id: String::new(), content: Some(invocation("", "f")) },
    ] {
        let outs = w.input(WorkerInput::Message(Box::new(odd)));
        assert!(matches!(outs[..], [WorkerOutput::Event(WorkerEvent::Unexpected { .. })]), "{outs:?}");
    }
    for stray in [
        WorkerInput::EnvReloaded { result: Ok(()) },
        WorkerInput::FunctionLoaded { function_id: "x".into(), result: Ok(()) },
    ] {
        let outs = w.input(stray);
        assert!(matches!(outs[..], [WorkerOutput::Event(WorkerEvent::Unexpected { .. })]), "{outs:?}");
    }
    assert!(w.w.is_registered());
}

#[test]
fn replies_for_a_stream_that_is_gone_are_dropped() {
    let (mut w, _) = W::new(config());
    w.register(false);
    let _ = w.msg(reload_request());
    let _ = w.reconnect();
    w.register(true);
    let outs = w.input(WorkerInput::EnvReloaded { result: Ok(()) });
    assert!(sent(&outs).is_empty(), "{outs:?}");
    assert!(events(&outs).iter().any(
        |e| matches!(e, WorkerEvent::ReplyDropped { what } if what == "FunctionEnvironmentReloadResponse")
    ));
}

// ---- invocations ----

#[test]
fn an_invocation_runs_once_and_its_duplicates_are_ignored() {
    let mut w = ready();
    let outs = w.msg(invocation("i1", "f"));
    assert_eq!(invoked(&outs), vec!["i1"]);
    assert_eq!(w.w.running(), 1);
    let outs = w.msg(invocation("i1", "f"));
    assert!(invoked(&outs).is_empty());
    assert!(
        matches!(events(&outs)[..], [WorkerEvent::DuplicateRequest { invocation }] if invocation == "i1")
    );
    let outs = w.input(done("i1"));
    assert_eq!(responses(&outs), vec!["i1"]);
    let outs = w.msg(invocation("i1", "f"));
    assert!(invoked(&outs).is_empty() && responses(&outs).is_empty(), "answered: not run again");
    // A second answer from the handler is not forwarded.
    let outs = w.input(done("i1"));
    assert!(matches!(
        events(&outs)[..],
        [WorkerEvent::ResponseDropped { why: ResponseDropReason::NotRunning, .. }]
    ));
}

#[test]
fn an_invocation_of_an_unloaded_function_is_refused() {
    let mut w = ready();
    let outs = w.msg(invocation("i1", "nope"));
    assert!(invoked(&outs).is_empty());
    assert!(failure_message(sent(&outs)[0]).contains("not loaded"));
    assert!(events(&outs).iter().any(|e| matches!(e, WorkerEvent::RequestRefused { .. })));
}

#[test]
fn cancel_is_forwarded_only_for_running_invocations() {
    let mut w = ready();
    let _ = w.msg(invocation("i1", "f"));
    let cancel = |id: &str| {
        Content::InvocationCancel(InvocationCancel { invocation_id: id.into(), grace_period: None })
    };
    let outs = w.msg(cancel("i1"));
    assert!(matches!(&outs[..], [WorkerOutput::Cancel { invocation_id }] if invocation_id == "i1"));
    let outs = w.msg(cancel("other"));
    assert!(outs.is_empty());
    let _ = w.input(done("i1"));
    assert!(w.msg(cancel("i1")).is_empty());
}

#[test]
fn responses_completed_while_disconnected_are_flushed_in_order_on_resume() {
    let mut w = ready();
    for id in ["a", "b", "c", "d"] {
        let _ = w.msg(invocation(id, "f"));
    }
    let _ = w.input(WorkerInput::Disconnected { reason: "reset".into() });
    for id in ["c", "a", "d"] {
        let outs = w.input(done(id));
        assert!(sent(&outs).is_empty(), "no stream: kept");
    }
    assert_eq!(w.w.buffered(), 3);
    let _ = w.next_timeout();
    let outs = w.register(true);
    assert_eq!(responses(&outs), vec!["c", "a", "d"], "completion order");
    assert!(events(&outs).contains(&&WorkerEvent::Resumed { flushed: 3 }));
    assert!(!outs.iter().any(|o| matches!(o, WorkerOutput::ResetApp)));
    assert_eq!(w.w.buffered(), 0);
    // The runtime re-sends all four (it sent them before reading the flush): none runs again.
    let mut outs = Vec::new();
    for id in ["a", "b", "c", "d"] {
        outs.extend(w.msg(invocation(id, "f")));
    }
    assert!(invoked(&outs).is_empty() && responses(&outs).is_empty(), "{outs:?}");
    assert_eq!(events(&outs).len(), 4);
    let outs = w.input(done("b"));
    assert_eq!(responses(&outs), vec!["b"]);
}

#[test]
fn a_response_lost_with_its_stream_is_sent_again_when_asked_again() {
    let mut w = ready();
    let _ = w.msg(invocation("i1", "f"));
    let _ = w.msg(invocation("i2", "f"));
    assert_eq!(responses(&w.input(done("i1"))), vec!["i1"]);
    // A heartbeat and its echo confirm i1; i2 is answered after that heartbeat.
    let outs = w.advance(Duration::from_millis(500));
    assert_eq!(heartbeats(&outs), 1);
    let _ = w.msg(heartbeat());
    assert_eq!(responses(&w.input(done("i2"))), vec!["i2"]);
    // The stream dies before i2's response arrives; the resumed runtime asks for both again.
    let _ = w.reconnect();
    let _ = w.register(true);
    let outs = w.msg(invocation("i2", "f"));
    assert_eq!(responses(&outs), vec!["i2"], "unconfirmed: sent again");
    assert!(events(&outs).iter().any(|e| matches!(e, WorkerEvent::Redelivered { .. })));
    let outs = w.msg(invocation("i1", "f"));
    assert!(responses(&outs).is_empty(), "confirmed: not sent again");
    assert!(matches!(events(&outs)[..], [WorkerEvent::DuplicateRequest { .. }]));
    assert!(invoked(&outs).is_empty());
}

#[test]
fn a_full_buffer_drops_the_oldest_and_refuses_its_resend() {
    let (mut w, _) = W::new(WorkerConfig { max_buffered_responses: 2, ..config() });
    w.register(false);
    w.specialize(&["f"]);
    for id in ["a", "b", "c"] {
        let _ = w.msg(invocation(id, "f"));
    }
    let _ = w.input(WorkerInput::Disconnected { reason: "reset".into() });
    let _ = w.input(done("a"));
    let _ = w.input(done("b"));
    let outs = w.input(done("c"));
    assert!(matches!(
        events(&outs)[..],
        [WorkerEvent::ResponseDropped { invocation, why: ResponseDropReason::BufferFull }] if invocation == "a"
    ));
    let _ = w.next_timeout();
    let outs = w.register(true);
    assert_eq!(responses(&outs), vec!["b", "c"]);
    let outs = w.msg(invocation("a", "f"));
    assert!(invoked(&outs).is_empty(), "never run twice");
    assert!(failure_message(sent(&outs)[0]).contains("dropped"));
}

#[test]
fn a_slot_not_restored_resets_the_app_and_forgets_its_work() {
    let mut w = ready();
    let _ = w.msg(invocation("i1", "f"));
    let _ = w.msg(invocation("i2", "f"));
    let _ = w.input(WorkerInput::Disconnected { reason: "reset".into() });
    let _ = w.input(done("i1"));
    let _ = w.next_timeout();
    let outs = w.register(false); // a new runtime, or the slot expired
    assert!(outs.iter().any(|o| matches!(o, WorkerOutput::ResetApp)));
    assert!(events(&outs).contains(&&WorkerEvent::SlotLost { running: 1, dropped_responses: 1 }));
    assert!(responses(&outs).is_empty(), "the new slot never asked for i1");
    assert_eq!((w.w.running(), w.w.buffered()), (0, 0));
    // i2 finishing later is not forwarded; the worker is a placeholder again.
    let outs = w.input(done("i2"));
    assert!(matches!(
        events(&outs)[..],
        [WorkerEvent::ResponseDropped { why: ResponseDropReason::NotRunning, .. }]
    ));
    let outs = w.msg(invocation("i3", "f"));
    assert!(failure_message(sent(&outs)[0]).contains("not loaded"));
    w.specialize(&["f"]);
}

#[test]
fn a_fresh_placeholder_registers_again_without_reset() {
    let (mut w, _) = W::new(config());
    w.register(false);
    let _ = w.reconnect();
    let outs = w.register(false);
    assert!(!outs.iter().any(|o| matches!(o, WorkerOutput::ResetApp)), "nothing to reset");
}

// ---- drain ----

#[test]
fn terminate_refuses_new_work_and_exits_0_once_running_work_is_delivered() {
    let mut w = ready();
    let _ = w.msg(invocation("i1", "f"));
    let grace = prost_types::Duration { seconds: 5, nanos: 0 };
    let outs = w.msg(Content::WorkerTerminate(WorkerTerminate { grace_period: Some(grace) }));
    assert!(events(&outs).iter().any(|e| matches!(
        e,
        WorkerEvent::Draining { cause: DrainCause::Terminate, running: 1, grace, .. } if *grace == Duration::from_secs(5)
    )));
    assert!(exit_of(&outs).is_none());
    let outs = w.msg(invocation("i2", "f"));
    assert!(invoked(&outs).is_empty());
    assert_eq!(failure_message(sent(&outs)[0]), "worker is draining");
    let outs = w.msg(invocation("i1", "f"));
    assert!(responses(&outs).is_empty(), "a re-send of running work is not refused");
    let outs = w.input(done("i1"));
    assert_eq!(responses(&outs), vec!["i1"]);
    assert_eq!(exit_of(&outs).map(|(c, _)| c), Some(0));
    assert!(w.w.has_exited());
}

#[test]
fn terminate_with_nothing_running_exits_at_once_and_never_redials() {
    let mut w = ready();
    let outs = w.msg(Content::WorkerTerminate(WorkerTerminate { grace_period: None }));
    assert_eq!(exit_of(&outs).map(|(c, _)| c), Some(0));
    assert_eq!(w.w.poll_timeout(), None);
    let outs = w.input(WorkerInput::Disconnected { reason: "closed".into() });
    assert!(outs.is_empty(), "exited: inputs are ignored");
}

#[test]
fn the_drain_grace_ending_first_exits_1_and_names_what_was_running() {
    let mut w = ready();
    let _ = w.msg(invocation("i1", "f"));
    let _ = w.msg(invocation("i2", "f"));
    let _ = w.msg(Content::WorkerTerminate(WorkerTerminate {
        grace_period: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
    }));
    let _ = w.input(done("i1"));
    let outs = w.advance(Duration::from_secs(1));
    let (code, reason) = exit_of(&outs).expect("exit");
    assert_eq!(code, 1);
    assert!(reason.contains("1 invocations still running"), "{reason}");
}

#[test]
fn local_drain_waits_for_the_runtime_to_confirm_delivery() {
    let mut w = ready();
    let _ = w.msg(invocation("i1", "f"));
    let outs = w.input(WorkerInput::Drain);
    assert!(
        events(&outs)
            .iter()
            .any(|e| matches!(e, WorkerEvent::Draining { cause: DrainCause::Local, running: 1, .. }))
    );
    let outs = w.input(done("i1"));
    assert_eq!(responses(&outs), vec!["i1"]);
    assert_eq!(heartbeats(&outs), 1, "asks for a confirmation at once");
    assert!(exit_of(&outs).is_none());
    let outs = w.msg(heartbeat());
    assert_eq!(exit_of(&outs).map(|(c, _)| c), Some(0), "{outs:?}");
}

#[test]
fn local_drain_reconnects_with_the_resume_token_only_to_deliver() {
    let mut w = ready();
    let _ = w.msg(invocation("i1", "f"));
    let _ = w.input(WorkerInput::Drain);
    let _ = w.input(WorkerInput::Disconnected { reason: "reset".into() });
    let _ = w.input(done("i1"));
    let outs = w.next_timeout();
    let meta = ConnMeta { join_token: None, resume_token: Some("tok".into()) };
    assert_eq!(connects(&outs), vec![&meta], "never admitted fresh while draining");
    let outs = w.register(true);
    assert_eq!(responses(&outs), vec!["i1"]);
    let outs = w.advance(Duration::from_millis(500));
    assert_eq!(heartbeats(&outs), 1);
    let outs = w.msg(heartbeat());
    assert_eq!(exit_of(&outs).map(|(c, _)| c), Some(0));
}

#[test]
fn local_drain_exits_1_when_the_runtime_lost_the_slot() {
    let mut w = ready();
    let _ = w.msg(invocation("i1", "f"));
    let _ = w.input(WorkerInput::Drain);
    let _ = w.input(WorkerInput::Disconnected { reason: "reset".into() });
    let _ = w.input(done("i1"));
    let _ = w.next_timeout();
    let outs = w.register(false);
    let (code, reason) = exit_of(&outs).expect("nothing left to deliver");
    assert_eq!(code, 1);
    assert!(reason.contains("lost this worker's slot and 1 invocations"), "{reason}");
}

#[test]
fn local_drain_with_nothing_to_do_exits_at_once() {
    let (mut w, _) = W::new(config());
    let outs = w.input(WorkerInput::Drain);
    assert_eq!(exit_of(&outs).map(|(c, _)| c), Some(0));
}

#[test]
fn local_drain_stops_redialing_at_its_deadline() {
    let (mut w, _) = W::new(WorkerConfig { drain_grace: Duration::from_secs(3), ..config() });
    w.register(false);
    w.specialize(&["f"]);
    let _ = w.msg(invocation("i1", "f"));
    let _ = w.input(WorkerInput::Drain);
    let drained_at = w.now;
    let _ = w.input(WorkerInput::Disconnected { reason: "reset".into() });
    let _ = w.input(done("i1"));
    let mut dials = 0;
    let mut exit = None;
    while exit.is_none() {
        let outs = w.next_timeout();
        dials += connects(&outs).len();
        exit = exit_of(&outs).map(|(c, r)| (c, r.to_owned()));
        if !connects(&outs).is_empty() {
            let _ = w.input(WorkerInput::ConnectFailed { error: "refused".into() });
        }
    }
    assert!(dials >= 3, "kept trying: {dials}");
    let (code, reason) = exit.unwrap();
    assert_eq!(code, 1);
    assert!(reason.contains("1 responses undelivered"), "{reason}");
    assert_eq!(w.now, drained_at + Duration::from_secs(3), "exits at the deadline, not later");
}

/// Reasons of the `WorkerActionResponse`s sent (the leave signal).
fn leaves(outs: &[WorkerOutput]) -> Vec<String> {
    sent(outs)
        .into_iter()
        .filter_map(|c| match c {
            Content::WorkerActionResponse(a) => Some(a.reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn local_drain_tells_the_runtime_and_runs_what_it_routed_before_it_heard() {
    let mut w = ready();
    let _ = w.msg(invocation("i1", "f"));
    let outs = w.input(WorkerInput::Drain);
    assert_eq!(leaves(&outs), vec![cap::LEAVE_DRAINING.to_owned()]);
    let outs = w.msg(invocation("i2", "f"));
    assert_eq!(invoked(&outs), vec!["i2"], "crossed the signal on the wire: run, not refused");
    let _ = w.input(done("i1"));
    let outs = w.input(done("i2"));
    assert_eq!(responses(&outs), vec!["i2"]);
    let outs = w.msg(heartbeat());
    assert_eq!(exit_of(&outs).map(|(c, _)| c), Some(0), "{outs:?}");
    assert!(leaves(&outs).is_empty(), "a clean exit needs no second signal");
}

#[test]
fn local_drain_without_connection_mode_sends_no_signal_and_refuses_new_work() {
    let (mut w, _) = W::new(config());
    let _ = w.register_with(&[]);
    w.specialize(&["f"]);
    let _ = w.msg(invocation("i1", "f"));
    let outs = w.input(WorkerInput::Drain);
    assert!(leaves(&outs).is_empty(), "a runtime that gave no token would not understand it");
    let outs = w.msg(invocation("i2", "f"));
    assert!(invoked(&outs).is_empty());
    assert_eq!(failure_message(sent(&outs)[0]), "worker is draining");
}

#[test]
fn local_drain_repeats_the_signal_after_a_resume() {
    let mut w = ready();
    let _ = w.msg(invocation("i1", "f"));
    let _ = w.input(WorkerInput::Disconnected { reason: "reset".into() });
    let outs = w.input(WorkerInput::Drain);
    assert!(leaves(&outs).is_empty(), "no stream to say it on");
    let _ = w.next_timeout();
    let outs = w.register(true);
    assert_eq!(leaves(&outs), vec![cap::LEAVE_DRAINING.to_owned()]);
}

#[test]
fn local_drain_running_out_of_grace_says_it_is_exiting() {
    let (mut w, _) = W::new(WorkerConfig { drain_grace: Duration::from_secs(1), ..config() });
    w.register(false);
    w.specialize(&["f"]);
    let _ = w.msg(invocation("i1", "f"));
    let _ = w.input(WorkerInput::Drain);
    let outs = w.advance(Duration::from_secs(1));
    let pos_leave = outs.iter().position(|o| {
        matches!(o, WorkerOutput::Send(m) if matches!(&m.content, Some(Content::WorkerActionResponse(a)) if a.reason == cap::LEAVE_EXITING))
    });
    let pos_exit = outs.iter().position(|o| matches!(o, WorkerOutput::Exit { code: 1, .. }));
    assert!(pos_leave.is_some() && pos_exit.is_some() && pos_leave < pos_exit, "{outs:?}");
}

#[test]
fn handler_logs_go_out_while_registered_and_are_dropped_while_disconnected() {
    let mut w = ready();
    let log = || {
        WorkerInput::Log(Box::new(switchboard_proto::rpc::RpcLog {
            message: "hi".into(),
            ..Default::default()
        }))
    };
    let outs = w.input(log());
    assert!(matches!(sent(&outs)[..], [Content::RpcLog(l)] if l.message == "hi"), "{outs:?}");
    let _ = w.input(WorkerInput::Disconnected { reason: "reset".into() });
    let outs = w.input(log());
    assert!(sent(&outs).is_empty(), "{outs:?}");
}

// ---- determinism ----

#[test]
fn same_seed_same_inputs_same_outputs() {
    fn run() -> String {
        let (mut w, mut log) = W::new(config());
        log.extend(w.register(false));
        w.specialize(&["f"]);
        log.extend(w.msg(invocation("i1", "f")));
        for _ in 0..3 {
            log.extend(w.input(WorkerInput::ConnectFailed { error: "x".into() }));
            log.extend(w.input(WorkerInput::Disconnected { reason: "x".into() }));
            log.extend(w.advance(Duration::from_secs(1)));
        }
        format!("{log:?}")
    }
    assert_eq!(run(), run());
}
