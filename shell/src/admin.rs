//! The admin API: JSON over HTTP on its own listener, behind a bearer token (except the health
//! probes). The CLI is a client of this API.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::app::{AppOptions, ScaleSpec};
use switchboard_core::proto::rpc::{TypedData, typed_data::Data};
use switchboard_core::{AppInfo, CallId, Invoke, Outcome, Payload, PoolInfo, Target, WorkerInfo};

use crate::appdir::load_app;
use crate::driver::Handle;
use crate::front_door::{HttpResponse, error};

/// Largest admin request body.
const MAX_BODY: usize = 1 << 20;

/// The admin API service.
#[derive(Debug)]
pub struct AdminApi {
    handle: Handle,
    token: String,
}

/// `POST /v1/apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    path: PathBuf,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    scale: Option<ScaleBody>,
}

/// A scale change; missing fields keep their current (or default) value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    min_workers: Option<u32>,
    max_workers: Option<u32>,
    concurrency: Option<u32>,
    queue_limit: Option<u32>,
}

impl ScaleBody {
    fn over(&self, base: ScaleSpec) -> ScaleSpec {
        ScaleSpec {
            min_workers: self.min_workers.unwrap_or(base.min_workers),
            max_workers: self.max_workers.unwrap_or(base.max_workers),
            concurrency: self.concurrency.unwrap_or(base.concurrency),
            queue_limit: self.queue_limit.unwrap_or(base.queue_limit),
        }
    }
}

impl AdminApi {
    /// An admin API over the driver behind `handle`, guarded by `token`.
    pub fn new(handle: Handle, token: String) -> Arc<Self> {
        Arc::new(AdminApi { handle, token })
    }

    /// Serves one request.
    pub async fn serve(self: Arc<Self>, req: Request<Incoming>) -> Result<HttpResponse, Infallible> {
        Ok(self.route(req).await)
    }

    async fn route(&self, req: Request<Incoming>) -> HttpResponse {
        let path = req.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["healthz"]) => return reply(StatusCode::OK, json!({"status": "ok"})),
            (&Method::GET, ["readyz"]) => return self.readyz().await,
            _ => {}
        }
        if !self.authorized(&req) {
            let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token", None);
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
            return resp;
        }
        let query = req.uri().query().unwrap_or("").to_owned();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "admin request body too large", None),
        };
        match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "apps"]) => self.list_apps().await,
            (&Method::POST, ["v1", "apps"]) => self.deploy(&body).await,
            (&Method::GET, ["v1", "apps", name]) => self.show_app(name).await,
            (&Method::DELETE, ["v1", "apps", name]) => self.remove_app(name).await,
            (&Method::PUT | &Method::POST, ["v1", "apps", name, "scale"]) => self.scale(name, &body).await,
            (&Method::POST, ["v1", "apps", name, "functions", function, "invoke"]) => {
                self.invoke(name, function, body).await
            }
            (&Method::GET, ["v1", "workers"]) => self.workers().await,
            (&Method::POST, ["v1", "workers", id, "drain"]) => self.drain(id).await,
            (&Method::GET, ["v1", "pools"]) => self.pools().await,
            _ => {
                let _ = query;
                error(StatusCode::NOT_FOUND, &format!("no admin route {method} {path}"), None)
            }
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(token) = value.strip_prefix("Bearer ") else { return false };
        constant_time_eq(token.trim().as_bytes(), self.token.as_bytes())
    }

    async fn readyz(&self) -> HttpResponse {
        match self.handle.with_core(|core, _| core.is_shutting_down()).await {
            Ok(false) => reply(StatusCode::OK, json!({"status": "ready"})),
            _ => reply(StatusCode::SERVICE_UNAVAILABLE, json!({"status": "shutting down"})),
        }
    }

    async fn list_apps(&self) -> HttpResponse {
        match self.handle.with_core(|core, _| core.apps()).await {
            Ok(apps) => reply(StatusCode::OK, Value::Array(apps.iter().map(app_json).collect())),
            Err(_) => stopped(),
        }
    }

    async fn show_app(&self, name: &str) -> HttpResponse {
        let name = name.to_owned();
        match self.handle.with_core(move |core, _| core.app(&name)).await {
            Ok(Some(app)) => reply(StatusCode::OK, app_json(&app)),
            Ok(None) => error(StatusCode::NOT_FOUND, "no such app", None),
            Err(_) => stopped(),
        }
    }

    async fn deploy(&self, body: &[u8]) -> HttpResponse {
        let request: DeployRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid deploy request: {e}"), None),
        };
        let options = AppOptions {
            name: request.name.clone(),
            settings: request.settings.clone(),
            scale: request.scale.as_ref().map(|s| s.over(ScaleSpec::default())),
            ..AppOptions::default()
        };
        let spec = match load_app(&request.path, &options) {
            Ok(spec) => spec,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string(), None),
        };
        let name = spec.name.to_string();
        match self.handle.with_core(move |core, now| core.deploy(now, spec)).await {
            Ok(Ok(version)) => reply(StatusCode::CREATED, json!({"name": name, "version": version})),
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &e.to_string(), None),
            Err(_) => stopped(),
        }
    }

    async fn remove_app(&self, name: &str) -> HttpResponse {
        let name = name.to_owned();
        match self.handle.with_core(move |core, now| core.remove_app(now, &name)).await {
            Ok(Ok(())) => reply(StatusCode::OK, json!({"removed": true})),
            Ok(Err(e)) => error(StatusCode::NOT_FOUND, &e.to_string(), None),
            Err(_) => stopped(),
        }
    }

    async fn scale(&self, name: &str, body: &[u8]) -> HttpResponse {
        let change: ScaleBody = match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid scale request: {e}"), None),
        };
        let name = name.to_owned();
        let result = self
            .handle
            .with_core(move |core, now| {
                let Some(app) = core.app(&name) else {
                    return Err(switchboard_core::AppError::NotFound(name));
                };
                let scale = change.over(app.scale);
                core.scale_app(now, &name, scale).map(|()| scale)
            })
            .await;
        match result {
            Ok(Ok(s)) => reply(StatusCode::OK, scale_json(&s)),
            Ok(Err(e @ switchboard_core::AppError::NotFound(_))) => {
                error(StatusCode::NOT_FOUND, &e.to_string(), None)
            }
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &e.to_string(), None),
            Err(_) => stopped(),
        }
    }

    async fn invoke(&self, app: &str, function: &str, body: Bytes) -> HttpResponse {
        let invoke = Invoke {
            call: CallId(0),
            app: app.to_owned(),
            target: Target::Function(function.to_owned()),
            payload: Payload::Data(TypedData { data: Some(Data::Bytes(body)) }),
            trace: None,
            timeout: None,
        };
        let started = Instant::now();
        let Ok(outcome) = self.handle.invoke(invoke).await else { return stopped() };
        let took_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, body) = outcome_json(outcome);
        let mut body = body;
        body["took_ms"] = took_ms.into();
        reply(status, body)
    }

    async fn workers(&self) -> HttpResponse {
        match self.handle.with_core(|core, now| core.workers(now)).await {
            Ok(workers) => reply(StatusCode::OK, Value::Array(workers.iter().map(worker_json).collect())),
            Err(_) => stopped(),
        }
    }

    async fn drain(&self, id: &str) -> HttpResponse {
        let id = id.to_owned();
        match self.handle.with_core(move |core, now| core.drain_worker(now, &id)).await {
            Ok(Ok(())) => reply(StatusCode::ACCEPTED, json!({"draining": true})),
            Ok(Err(e)) => error(StatusCode::NOT_FOUND, &e.to_string(), None),
            Err(_) => stopped(),
        }
    }

    async fn pools(&self) -> HttpResponse {
        match self.handle.with_core(|core, _| core.pools()).await {
            Ok(pools) => reply(StatusCode::OK, Value::Array(pools.iter().map(pool_json).collect())),
            Err(_) => stopped(),
        }
    }
}

fn stopped() -> HttpResponse {
    error(StatusCode::SERVICE_UNAVAILABLE, "the runtime is stopped", None)
}

fn reply(status: StatusCode, body: Value) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("valid"));
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn scale_json(s: &ScaleSpec) -> Value {
    json!({
        "min_workers": s.min_workers,
        "max_workers": s.max_workers,
        "concurrency": s.concurrency,
        "queue_limit": s.queue_limit,
    })
}

/// An app as JSON; setting values are redacted by the core already.
fn app_json(app: &AppInfo) -> Value {
    let functions: Vec<Value> = app
        .spec
        .functions
        .iter()
        .map(|f| {
            let trigger = match &f.trigger {
                switchboard_core::app::Trigger::Http(h) => {
                    json!({"type": "http", "route": h.route.raw, "methods": h.methods})
                }
                switchboard_core::app::Trigger::Timer { schedule, .. } => {
                    json!({"type": "timer", "schedule": schedule})
                }
                switchboard_core::app::Trigger::Other { kind, .. } => json!({"type": kind}),
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
    })
}

fn worker_json(w: &WorkerInfo) -> Value {
    json!({
        "id": w.id,
        "pool": w.pool.to_string(),
        "state": w.state.label(),
        "app": w.app,
        "in_flight": w.in_flight,
        "capacity": w.capacity,
        "last_seen_ms": w.last_seen.as_millis() as u64,
        "in_state_ms": w.in_state.as_millis() as u64,
        "peer": w.peer,
        "provisioned": w.provisioned,
    })
}

fn pool_json(p: &PoolInfo) -> Value {
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

/// An outcome as JSON for admin callers (who may see error messages).
fn outcome_json(outcome: Outcome) -> (StatusCode, Value) {
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
        Outcome::Timeout | Outcome::Cancelled => (StatusCode::OK, json!({"outcome": kind})),
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
