//! Typed app definitions: what an Azure Functions app folder (function.json model) means.
//!
//! The shell reads the files; [`super::parse`] turns their text into these types. Nothing here
//! touches the file system: paths are carried as strings and sent to workers as they are.

use std::collections::BTreeMap;
use std::time::Duration;

/// An app (one JobHost): everything the runtime needs to specialize workers and route calls.
/// `Debug` shows the settings' names, never their values.
#[derive(Clone, PartialEq)]
pub struct AppSpec {
    /// Validated app name: the first path segment on the front door.
    pub name: AppName,
    /// Worker language (`python`, `custom`, ...): selects the placeholder pool.
    pub language: String,
    /// Language version (`3.11`); empty means "any pool of this language".
    pub version: String,
    /// Absolute app folder, as the worker will see it (`function_app_directory`).
    pub directory: String,
    /// Functions, sorted by name.
    pub functions: Vec<FunctionSpec>,
    /// App settings (secrets included): sent only to workers specialized for this app.
    pub settings: BTreeMap<String, String>,
    /// Scale and concurrency.
    pub scale: ScaleSpec,
    /// Deadline for one invocation (host.json `functionTimeout`).
    pub function_timeout: Duration,
    /// HTTP route prefix (host.json `extensions.http.routePrefix`, default `api`; may be empty).
    pub route_prefix: String,
    /// Show function error messages to HTTP callers (off by default: messages may leak data).
    pub expose_errors: bool,
}

impl std::fmt::Debug for AppSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSpec")
            .field("name", &self.name)
            .field("language", &self.language)
            .field("version", &self.version)
            .field("directory", &self.directory)
            .field("functions", &self.functions)
            .field("settings", &crate::redact::Keys(&self.settings))
            .field("scale", &self.scale)
            .field("function_timeout", &self.function_timeout)
            .field("route_prefix", &self.route_prefix)
            .field("expose_errors", &self.expose_errors)
            .finish()
    }
}

/// A validated app name: 1–64 chars of `[A-Za-z0-9_-]`, not starting with `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName(String);

impl AppName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a name that [`super::parse::parse_app_name`] already validated.
    pub(crate) fn new_unchecked(name: String) -> Self {
        AppName(name)
    }
}

impl std::fmt::Display for AppName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for AppName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Scale bounds and per-worker concurrency for one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleSpec {
    /// Workers kept specialized even without traffic.
    pub min_workers: u32,
    /// Upper bound on workers specialized for this app.
    pub max_workers: u32,
    /// In-flight invocations per worker, unless the worker advertises its own capacity.
    pub concurrency: u32,
    /// Invocations that may wait for a worker before new ones are refused (backpressure).
    pub queue_limit: u32,
}

impl Default for ScaleSpec {
    fn default() -> Self {
        ScaleSpec { min_workers: 0, max_workers: 4, concurrency: 16, queue_limit: 256 }
    }
}

/// One function of an app.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// Function name (its folder's name).
    pub name: String,
    /// Absolute function folder.
    pub directory: String,
    /// Absolute path of the script (`scriptFile`, default `__init__.py` for Python).
    pub script_file: String,
    /// Entry point (`entryPoint`); empty means the worker's default (`main`).
    pub entry_point: String,
    /// The trigger binding.
    pub trigger: Trigger,
    /// All bindings in file order, trigger included.
    pub bindings: Vec<BindingSpec>,
    /// Retry policy (`retry` in function.json), applied when a worker is lost mid-invocation
    /// and, for non-HTTP triggers, when the function fails.
    pub retry: Option<RetryPolicy>,
    /// `disabled: true` in function.json: deployed but never invoked.
    pub disabled: bool,
}

impl FunctionSpec {
    /// Name of the trigger binding (the input parameter the worker expects, e.g. `req`).
    pub fn trigger_name(&self) -> &str {
        match &self.trigger {
            Trigger::Http(http) => &http.binding,
            Trigger::Timer { binding, .. } | Trigger::Other { binding, .. } => binding,
        }
    }

    /// Name of the HTTP output binding (`$return` or a named `http` out binding), if any.
    pub fn http_output(&self) -> Option<&str> {
        self.bindings
            .iter()
            .find(|b| b.direction == Direction::Out && b.kind == "http")
            .map(|b| b.name.as_str())
    }
}

/// What starts a function.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// `httpTrigger`: reachable on the front door.
    Http(HttpTrigger),
    /// `timerTrigger` with its NCRONTAB schedule (six fields).
    Timer {
        /// Binding name.
        binding: String,
        /// The schedule as written.
        schedule: String,
        /// `runOnStartup`.
        run_on_startup: bool,
    },
    /// Any other `*Trigger`: invocable through the admin API only.
    Other {
        /// Binding name.
        binding: String,
        /// Binding type as written (`queueTrigger`, ...).
        kind: String,
    },
}

/// An HTTP trigger's routing.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTrigger {
    /// Binding name (`req`).
    pub binding: String,
    /// Parsed route template (default: the function name).
    pub route: RouteTemplate,
    /// Allowed methods, upper case; empty means all.
    pub methods: Vec<String>,
    /// `authLevel` as written (`anonymous`, `function`, `admin`); informational.
    pub auth_level: String,
}

/// A route template such as `items/{id}` or `files/{*path}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    /// The template as written (without leading or trailing `/`).
    pub raw: String,
    /// Its segments.
    pub segments: Vec<RouteSegment>,
}

/// One segment of a route template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSegment {
    /// Matches this text exactly (ASCII case-insensitive, as ASP.NET routing).
    Literal(String),
    /// `{name}` or `{name?}` or `{name:constraint}`: one segment, bound to `name`.
    Param {
        /// Parameter name.
        name: String,
        /// `{name?}`: may be absent (only as the last segment).
        optional: bool,
        /// `{name:int}` etc.: only `int`, `alpha`, `bool`, `guid` are checked; others accepted.
        constraint: Option<String>,
    },
    /// `{*name}`: the rest of the path (last segment only), may be empty.
    CatchAll(String),
}

/// One binding from function.json.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingSpec {
    /// `name`.
    pub name: String,
    /// `type` as written (`httpTrigger`, `http`, ...).
    pub kind: String,
    /// `direction`.
    pub direction: Direction,
    /// `dataType` (`string`, `binary`, `stream`), if given.
    pub data_type: Option<String>,
    /// The binding's JSON object, re-serialized, for `raw_bindings`.
    pub raw: String,
}

/// Binding direction, as on the wire (`in=0, out=1, inout=2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Input (triggers are inputs).
    In,
    /// Output.
    Out,
    /// Both.
    InOut,
}

/// function.json `retry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `maxRetryCount` (-1 in Azure means forever; we cap it at 100).
    pub max_retries: u32,
    /// How long to wait before each retry.
    pub strategy: RetryStrategy,
}

/// When to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryStrategy {
    /// `fixedDelay` with `delayInterval`.
    Fixed(Duration),
    /// `exponentialBackoff` from `minimumInterval` doubling up to `maximumInterval`.
    Exponential {
        /// First delay.
        min: Duration,
        /// Cap.
        max: Duration,
    },
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        match self.strategy {
            RetryStrategy::Fixed(d) => d,
            RetryStrategy::Exponential { min, max } => {
                let shift = attempt.saturating_sub(1).min(20);
                min.saturating_mul(1 << shift).min(max)
            }
        }
    }
}
