//! The admin API's JSON views of apps, workers, pools and outcomes.

use http::StatusCode;
use serde_json::{Value, json};
use switchboard_core::app::{ScaleSpec, Trigger};
use switchboard_core::proto::rpc::{TypedData, typed_data::Data};
use switchboard_core::{AppInfo, Outcome, PoolInfo, WorkerInfo};

pub(super) fn scale_json(s: &ScaleSpec) -> Value {
    json!({
        "min_workers": s.min_workers,
        "max_workers": s.max_workers,
        "concurrency": s.concurrency,
        "queue_limit": s.queue_limit,
    })
}

/// An app as JSON; setting values are redacted by the core already (only names are shown).
pub(super) fn app_json(app: &AppInfo) -> Value {
    let functions: Vec<Value> = app
        .spec
        .functions
        .iter()
        .map(|f| {
            let trigger = match &f.trigger {
                Trigger::Http(h) => json!({"type": "http", "route": h.route.raw, "methods": h.methods}),
                Trigger::Timer { schedule, .. } => json!({"type": "timer", "schedule": schedule}),
                Trigger::Other { kind, .. } => json!({"type": kind}),
            };
            json!({"name": f.name, "trigger": trigger, "disabled": f.disabled})
        })
        .collect();
    json!({
        "name": app.name,
        "version": app.version,
        "language": app.spec.language,
        "directory": app.spec.directory,
        "route_prefix": app.spec.route_prefix,
        "functions": functions,
        "settings": app.spec.settings.keys().collect::<Vec<_>>(),
        "scale": scale_json(&app.scale),
        "ready": app.ready,
        "specializing": app.specializing,
        "workers": app.workers,
        "queued": app.queued,
        "in_flight": app.in_flight,
        "failures": app.failures,
        "last_error": app.last_error,
        "failing": app.failing,
        "last_specialization": app.last_specialization.map(|t| json!({
            "env_reload_ms": t.env_reload.as_secs_f64() * 1000.0,
            "metadata_ms": t.metadata.as_secs_f64() * 1000.0,
            "load_ms": t.load.as_secs_f64() * 1000.0,
            "total_ms": t.total.as_secs_f64() * 1000.0,
        })),
    })
}

/// A worker as JSON, with the pid of its process when the runtime started it locally.
pub(super) fn worker_json(w: &WorkerInfo, pid: Option<u32>) -> Value {
    json!({
        "id": w.id,
        "pool": w.pool.to_string(),
        "language": w.pool.language,
        "version": w.pool.version,
        "state": w.state.label(),
        "app": w.app,
        "in_flight": w.in_flight,
        "capacity": w.capacity,
        "last_seen_ms": w.last_seen.as_millis() as u64,
        "in_state_ms": w.in_state.as_millis() as u64,
        "peer": w.peer,
        "pid": pid,
        "provisioned": w.provisioned,
    })
}

pub(super) fn pool_json(p: &PoolInfo) -> Value {
    json!({
        "pool": p.key.to_string(),
        "language": p.key.language,
        "version": p.key.version,
        "min_idle": p.min_idle,
        "max": p.max,
        "idle": p.idle,
        "members": p.members,
        "provisioning": p.provisioning,
        "initializing": p.initializing,
        "failures": p.failures,
        "waiting_apps": p.waiting_apps,
    })
}

/// An outcome as JSON for admin callers (who may see error messages). The status is 200 for
/// every outcome of a function that ran (success, failure, timeout, cancelled): `outcome` says
/// which; 404 when there was nothing to call, 503 when it could not run.
pub(super) fn outcome_json(outcome: Outcome) -> (StatusCode, Value) {
    let kind = outcome.kind().label();
    match outcome {
        Outcome::Completed(done) => {
            let (status, body) = match &done.http {
                Some(http) => (http.status_code.clone(), typed_text(http.body.as_deref())),
                None => (String::new(), typed_text(done.return_value.as_ref())),
            };
            (StatusCode::OK, json!({"outcome": kind, "status": status, "body": body}))
        }
        Outcome::Failed(f) => (
            StatusCode::OK,
            json!({"outcome": kind, "error": f.exception.message, "stack_trace": f.exception.stack_trace}),
        ),
        Outcome::NotFound(what) => {
            (StatusCode::NOT_FOUND, json!({"outcome": kind, "error": what.to_string()}))
        }
        Outcome::Unavailable { reason, .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, json!({"outcome": kind, "error": reason.to_string()}))
        }
        Outcome::Timeout => {
            (StatusCode::OK, json!({"outcome": kind, "error": "the function did not answer in time"}))
        }
        Outcome::Cancelled => (StatusCode::OK, json!({"outcome": kind, "error": "cancelled"})),
    }
}

fn typed_text(data: Option<&TypedData>) -> Value {
    match data.and_then(|d| d.data.as_ref()) {
        Some(Data::Bytes(b) | Data::Stream(b)) => String::from_utf8_lossy(b).into_owned().into(),
        Some(Data::String(s) | Data::Json(s)) => s.clone().into(),
        Some(Data::Int(i)) => (*i).into(),
        Some(Data::Double(d)) => (*d).into(),
        _ => Value::Null,
    }
}
