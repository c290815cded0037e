//! The admin API: JSON over HTTP on its own listener, behind a bearer token (except the health
//! probes, and `/metrics` when configured public). The CLI is a client of this API.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | the process is up (no token) |
//! | `GET /readyz` | 200 while accepting work, 503 once shutting down (no token) |
//! | `GET /metrics` | Prometheus metrics (OpenMetrics text) |
//! | `GET /v1/apps` | every app |
//! | `POST /v1/apps` | deploy an app folder, or a new version of a deployed app |
//! | `GET /v1/apps/{name}` | one app |
//! | `PUT /v1/apps/{name}` | a new version of a deployed app (404 if it is not) |
//! | `DELETE /v1/apps/{name}` | remove an app (its workers drain) |
//! | `PUT /v1/apps/{name}/scale` | change min/max workers, concurrency, queue limit |
//! | `POST /v1/apps/{name}/drain` | drain every worker of the app (fresh ones replace them) |
//! | `GET /v1/apps/{name}/logs` | recent worker log lines; `?follow=true` streams them (SSE) |
//! | `POST /v1/apps/{name}/functions/{f}/invoke` | run a function with the body as input |
//! | `GET /v1/workers` | every worker |
//! | `POST /v1/workers/{id}/drain` | drain one worker |
//! | `GET /v1/pools` | every placeholder pool |

mod json;
mod stream;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::app::{AppOptions, ScaleSpec};
use switchboard_core::proto::rpc::{TypedData, typed_data::Data};
use switchboard_core::{AppError, CallId, Invoke, Payload, Target, WorkerState};

use self::json::{app_json, outcome_json, pool_json, scale_json, worker_json};
pub(crate) use self::stream::Sleeper;
use crate::appdir::load_app;
use crate::driver::Handle;
use crate::front_door::{self, trace_context};
use crate::logs::{LogHub, LogLine, RING};
use crate::metrics::{self, MetricsRegistry, Snapshot};
use crate::serve::Stop;

/// Largest admin request body.
const MAX_BODY: usize = 1 << 20;
/// Lines `GET /v1/apps/{name}/logs` returns without `tail`.
const DEFAULT_TAIL: usize = 100;
/// Lines a follower gets before the live ones without `tail`.
const DEFAULT_FOLLOW_TAIL: usize = 10;

/// An admin response body: whole, or streamed (live logs).
pub type AdminBody = UnsyncBoxBody<Bytes, Infallible>;
/// An admin response.
pub type AdminResponse = Response<AdminBody>;

/// What the admin API serves from besides the driver.
#[derive(Clone)]
pub struct AdminParts {
    /// The bearer token.
    pub token: String,
    /// Serve `/metrics` without the token.
    pub public_metrics: bool,
    /// The event-fed metrics.
    pub metrics: MetricsRegistry,
    /// Worker log lines.
    pub logs: LogHub,
    /// Fires when the runtime stops (ends log streams).
    pub stop: Stop,
    /// The runtime's timer (log-stream heartbeats).
    pub sleep: Sleeper,
}

impl std::fmt::Debug for AdminParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminParts").field("public_metrics", &self.public_metrics).finish_non_exhaustive()
    }
}

/// The admin API service.
#[derive(Debug)]
pub struct AdminApi {
    handle: Handle,
    parts: AdminParts,
}

/// `POST /v1/apps` and `PUT /v1/apps/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    /// The app folder, as the runtime sees it.
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

/// Whether a deploy may create the app or must find it deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeployMode {
    CreateOrUpdate,
    UpdateOnly,
}

impl AdminApi {
    /// An admin API over the driver behind `handle`.
    pub fn new(handle: Handle, parts: AdminParts) -> Arc<Self> {
        Arc::new(AdminApi { handle, parts })
    }

    /// Serves one request.
    pub async fn serve(self: Arc<Self>, req: Request<Incoming>) -> Result<AdminResponse, Infallible> {
        Ok(self.route(req).await)
    }

    async fn route(&self, req: Request<Incoming>) -> AdminResponse {
        let path = req.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        let query = Query::parse(req.uri().query());
        match (&method, segments.as_slice()) {
            (&Method::GET, ["healthz"]) => return reply(StatusCode::OK, json!({"status": "ok"})),
            (&Method::GET, ["readyz"]) => return self.readyz().await,
            (&Method::GET, ["metrics"]) if self.parts.public_metrics => return self.metrics().await,
            _ => {}
        }
        if !self.authorized(req.headers()) {
            let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
            return resp;
        }
        let headers = req.headers().clone();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "admin request body too large"),
        };
        match (&method, segments.as_slice()) {
            (&Method::GET, ["metrics"]) => self.metrics().await,
            (&Method::GET, ["v1", "apps"]) => self.list_apps().await,
            (&Method::POST, ["v1", "apps"]) => self.deploy(None, &body, DeployMode::CreateOrUpdate).await,
            (&Method::GET, ["v1", "apps", name]) => self.show_app(name).await,
            (&Method::PUT, ["v1", "apps", name]) => {
                self.deploy(Some(name), &body, DeployMode::UpdateOnly).await
            }
            (&Method::DELETE, ["v1", "apps", name]) => self.remove_app(name).await,
            (&Method::PUT | &Method::POST, ["v1", "apps", name, "scale"]) => self.scale(name, &body).await,
            (&Method::POST, ["v1", "apps", name, "drain"]) => self.drain_app(name).await,
            (&Method::GET, ["v1", "apps", name, "logs"]) => self.logs(name, &query).await,
            (&Method::POST, ["v1", "apps", name, "functions", function, "invoke"]) => {
                self.invoke(name, function, &headers, body).await
            }
            (&Method::GET, ["v1", "workers"]) => self.workers().await,
            (&Method::POST, ["v1", "workers", id, "drain"]) => self.drain(id).await,
            (&Method::GET, ["v1", "pools"]) => self.pools().await,
            _ => error(StatusCode::NOT_FOUND, &format!("no admin route {method} {path}")),
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(token) = value.strip_prefix("Bearer ") else { return false };
        constant_time_eq(token.trim().as_bytes(), self.parts.token.as_bytes())
    }

    async fn readyz(&self) -> AdminResponse {
        match self.handle.with_core(|core, _| core.is_shutting_down()).await {
            Ok(false) => reply(StatusCode::OK, json!({"status": "ready"})),
            _ => reply(StatusCode::SERVICE_UNAVAILABLE, json!({"status": "shutting down"})),
        }
    }

    async fn metrics(&self) -> AdminResponse {
        let Ok(snapshot) = self.handle.with_core(|core, now| Snapshot::take(core, now)).await else {
            return stopped();
        };
        match self.parts.metrics.render(&snapshot) {
            Ok(text) => {
                let mut resp = Response::new(full(Bytes::from(text)));
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, metrics::CONTENT_TYPE.parse().expect("valid"));
                resp
            }
            Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "could not encode the metrics"),
        }
    }

    async fn list_apps(&self) -> AdminResponse {
        match self.handle.with_core(|core, _| core.apps()).await {
            Ok(apps) => reply(StatusCode::OK, Value::Array(apps.iter().map(app_json).collect())),
            Err(_) => stopped(),
        }
    }

    async fn show_app(&self, name: &str) -> AdminResponse {
        let name = name.to_owned();
        match self.handle.with_core(move |core, _| core.app(&name)).await {
            Ok(Some(app)) => reply(StatusCode::OK, app_json(&app)),
            Ok(None) => error(StatusCode::NOT_FOUND, "no such app"),
            Err(_) => stopped(),
        }
    }

    async fn deploy(&self, name: Option<&str>, body: &[u8], mode: DeployMode) -> AdminResponse {
        let request: DeployRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid deploy request: {e}")),
        };
        let options = AppOptions {
            name: name.map(str::to_owned).or(request.name.clone()),
            settings: request.settings.clone(),
            scale: request.scale.as_ref().map(|s| s.over(ScaleSpec::default())),
            ..AppOptions::default()
        };
        let spec = match load_app(&request.path, &options) {
            Ok(spec) => spec,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let name = spec.name.to_string();
        let app = name.clone();
        let result = self
            .handle
            .with_core(move |core, now| {
                if mode == DeployMode::UpdateOnly && core.app(&app).is_none() {
                    return Err(AppError::NotFound(app));
                }
                core.deploy(now, spec)
            })
            .await;
        match result {
            Ok(Ok(version)) => {
                let status = if version == 1 { StatusCode::CREATED } else { StatusCode::OK };
                reply(status, json!({"name": name, "version": version}))
            }
            Ok(Err(e @ AppError::NotFound(_))) => error(StatusCode::NOT_FOUND, &e.to_string()),
            Ok(Err(e @ (AppError::Removing(_) | AppError::ShuttingDown))) => {
                error(StatusCode::CONFLICT, &e.to_string())
            }
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
            Err(_) => stopped(),
        }
    }

    async fn remove_app(&self, name: &str) -> AdminResponse {
        let name = name.to_owned();
        match self.handle.with_core(move |core, now| core.remove_app(now, &name)).await {
            Ok(Ok(())) => reply(StatusCode::OK, json!({"removed": true})),
            Ok(Err(e)) => error(StatusCode::NOT_FOUND, &e.to_string()),
            Err(_) => stopped(),
        }
    }

    async fn scale(&self, name: &str, body: &[u8]) -> AdminResponse {
        let change: ScaleBody = match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid scale request: {e}")),
        };
        let name = name.to_owned();
        let result = self
            .handle
            .with_core(move |core, now| {
                let Some(app) = core.app(&name) else {
                    return Err(AppError::NotFound(name));
                };
                let scale = change.over(app.scale);
                core.scale_app(now, &name, scale).map(|()| scale)
            })
            .await;
        match result {
            Ok(Ok(s)) => reply(StatusCode::OK, scale_json(&s)),
            Ok(Err(e @ AppError::NotFound(_))) => error(StatusCode::NOT_FOUND, &e.to_string()),
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
            Err(_) => stopped(),
        }
    }

    /// Drains every worker of an app: each finishes what it runs and is released; the app stays
    /// deployed and its next calls specialize fresh placeholders (a rolling restart).
    async fn drain_app(&self, name: &str) -> AdminResponse {
        let app = name.to_owned();
        let result = self
            .handle
            .with_core(move |core, now| {
                core.app(&app)?;
                let ids: Vec<String> = core
                    .workers(now)
                    .into_iter()
                    .filter(|w| w.app.as_deref() == Some(app.as_str()))
                    .filter(|w| !matches!(w.state, WorkerState::Draining | WorkerState::Gone))
                    .map(|w| w.id)
                    .collect();
                for id in &ids {
                    // Listed just now on this same turn of the driver: every id is known.
                    let _ = core.drain_worker(now, id);
                }
                Some(ids)
            })
            .await;
        match result {
            Ok(Some(ids)) => reply(StatusCode::ACCEPTED, json!({"app": name, "draining": ids})),
            Ok(None) => error(StatusCode::NOT_FOUND, &format!("no app named {name:?}")),
            Err(_) => stopped(),
        }
    }

    async fn logs(&self, name: &str, query: &Query) -> AdminResponse {
        let app = name.to_owned();
        match self.handle.with_core(move |core, _| core.app(&app).is_some()).await {
            Ok(true) => {}
            Ok(false) => return error(StatusCode::NOT_FOUND, &format!("no app named {name:?}")),
            Err(_) => return stopped(),
        }
        let system = query.flag("system");
        let tail = match query.get("tail").map(str::parse::<usize>) {
            None => None,
            Some(Ok(n)) => Some(n.min(RING)),
            Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "tail must be a number of lines"),
        };
        if !query.flag("follow") {
            let lines = self.parts.logs.recent(name, tail.unwrap_or(DEFAULT_TAIL), system);
            let lines: Vec<&LogLine> = lines.iter().map(|l| &**l).collect();
            let body = serde_json::to_string(&lines).expect("log lines serialize");
            let mut resp = Response::new(full(Bytes::from(body)));
            resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("valid"));
            return resp;
        }
        let (backlog, follower) = self.parts.logs.follow(name, tail.unwrap_or(DEFAULT_FOLLOW_TAIL), system);
        let body = stream::sse(backlog, follower, self.parts.stop.clone(), Arc::clone(&self.parts.sleep));
        let mut resp = Response::new(body.boxed_unsync());
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, "text/event-stream".parse().expect("valid"));
        headers.insert(header::CACHE_CONTROL, "no-cache".parse().expect("valid"));
        resp
    }

    async fn invoke(&self, app: &str, function: &str, headers: &HeaderMap, body: Bytes) -> AdminResponse {
        let invoke = Invoke {
            call: CallId(0),
            app: app.to_owned(),
            target: Target::Function(function.to_owned()),
            payload: Payload::Data(TypedData { data: Some(Data::Bytes(body)) }),
            trace: trace_context(headers),
            timeout: None,
        };
        let started = Instant::now();
        let Ok(outcome) = self.handle.invoke(invoke).await else { return stopped() };
        let took_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, mut body) = outcome_json(outcome);
        body["took_ms"] = took_ms.into();
        reply(status, body)
    }

    async fn workers(&self) -> AdminResponse {
        match self.handle.workers().await {
            Ok(workers) => reply(
                StatusCode::OK,
                Value::Array(workers.iter().map(|(w, pid)| worker_json(w, *pid)).collect()),
            ),
            Err(_) => stopped(),
        }
    }

    async fn drain(&self, id: &str) -> AdminResponse {
        let id = id.to_owned();
        match self.handle.with_core(move |core, now| core.drain_worker(now, &id)).await {
            Ok(Ok(())) => reply(StatusCode::ACCEPTED, json!({"draining": true})),
            Ok(Err(e)) => error(StatusCode::NOT_FOUND, &e.to_string()),
            Err(_) => stopped(),
        }
    }

    async fn pools(&self) -> AdminResponse {
        match self.handle.with_core(|core, _| core.pools()).await {
            Ok(pools) => reply(StatusCode::OK, Value::Array(pools.iter().map(pool_json).collect())),
            Err(_) => stopped(),
        }
    }
}

/// A request's query parameters.
#[derive(Debug, Default)]
struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        Query(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// `?key`, `?key=true` or `?key=1`.
    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("" | "true" | "1"))
    }
}

fn full(body: Bytes) -> AdminBody {
    Full::new(body).boxed_unsync()
}

fn stopped() -> AdminResponse {
    error(StatusCode::SERVICE_UNAVAILABLE, "the runtime is stopped")
}

fn error(status: StatusCode, message: &str) -> AdminResponse {
    front_door::error(status, message, None).map(|b| b.boxed_unsync())
}

fn reply(status: StatusCode, body: Value) -> AdminResponse {
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("valid"));
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags() {
        let q = Query::parse(Some("follow=true&tail=5&system"));
        assert!(q.flag("follow") && q.flag("system") && !q.flag("other"));
        assert_eq!(q.get("tail"), Some("5"));
        assert!(!Query::parse(Some("follow=false")).flag("follow"));
    }
}
