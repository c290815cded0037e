//! Parsing an Azure Functions app folder (function.json model) into an [`AppSpec`].
//!
//! Pure functions over text: the shell reads `host.json`, `local.settings.json` and every
//! `<function>/function.json`, lists each function folder's files, and hands them over as
//! [`AppFiles`]. This module checks them the way the Azure Functions host does (JSON keys are
//! matched ASCII case-insensitively, as the host's configuration does) and builds the typed spec.
//! Every error names the file, relative to the app folder, and the problem.
//!
//! Internal helpers return the problem as a `String`; the public functions attach the file.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Map, Value};

use super::route::{check_literal, route_template};
use super::spec::{
    AppName, AppSpec, BindingSpec, Direction, FunctionSpec, HttpTrigger, RetryPolicy, RetryStrategy,
    RouteTemplate, ScaleSpec, Trigger,
};

/// Most functions one app may have.
pub const MAX_FUNCTIONS: usize = 1000;
/// Most bindings one function may have.
pub const MAX_BINDINGS: usize = 64;
/// Longest route template, in characters.
pub const MAX_ROUTE_LEN: usize = 1024;
/// Most app settings one app may have.
pub const MAX_SETTINGS: usize = 10_000;
/// Longest app name.
pub const MAX_APP_NAME_LEN: usize = 64;
/// Longest function name (Azure's limit).
pub const MAX_FUNCTION_NAME_LEN: usize = 128;
/// `functionTimeout` when host.json does not set one.
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Largest accepted `functionTimeout`: one day.
pub const MAX_FUNCTION_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Cap on `maxRetryCount` (Azure's `-1`, "forever", becomes this).
pub const MAX_RETRY_COUNT: u32 = 100;
/// HTTP methods an `httpTrigger` may list.
pub const HTTP_METHODS: [&str; 8] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"];

/// Why an app folder cannot be deployed: where the problem is and what it is.
///
/// Displays as `{file}: {problem}`, e.g. `hello/function.json: bindings[0]: missing "type"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct SpecError {
    /// Where: a file relative to the app folder (`host.json`, `hello/function.json`), the app
    /// folder itself for app-wide problems, or the thing at fault when no file is
    /// (`app name "../x"`, `function name "a.b"`, `deploy options`, `route "a//b"`).
    pub file: String,
    /// What is wrong, precisely enough to fix it.
    pub problem: String,
}

impl SpecError {
    /// An error about `file`.
    fn new(file: impl Into<String>, problem: impl Into<String>) -> Self {
        SpecError { file: file.into(), problem: problem.into() }
    }
}

/// What the shell read from an app folder. The shell does the I/O; this module only parses.
#[derive(Debug, Clone, Default)]
pub struct AppFiles {
    /// Absolute app folder path.
    pub directory: String,
    /// Text of host.json, `None` if the file is missing.
    pub host_json: Option<String>,
    /// Text of local.settings.json, `None` if missing.
    pub local_settings: Option<String>,
    /// One per direct subfolder that contains function.json.
    pub functions: Vec<FunctionFiles>,
}

/// One function folder: its name, its function.json and the files next to it.
#[derive(Debug, Clone, Default)]
pub struct FunctionFiles {
    /// The subfolder's name = the function name.
    pub name: String,
    /// Its function.json text.
    pub function_json: String,
    /// File paths in that folder, relative to it, `/`-separated (`__init__.py`, `lib/x.py`).
    pub files: Vec<String>,
}

/// Deploy-time choices that override what the folder says. `Debug` hides setting values.
#[derive(Clone, Default)]
pub struct AppOptions {
    /// App name; default: the folder's last path component.
    pub name: Option<String>,
    /// Worker language; default: `FUNCTIONS_WORKER_RUNTIME`, else guessed (see [`parse_app`]).
    pub language: Option<String>,
    /// Language version; default: `FUNCTIONS_WORKER_RUNTIME_VERSION`, else any.
    pub version: Option<String>,
    /// Settings merged over local.settings.json `Values` (these win).
    pub settings: BTreeMap<String, String>,
    /// Scale; default [`ScaleSpec::default`].
    pub scale: Option<ScaleSpec>,
    /// Overrides host.json `functionTimeout`.
    pub function_timeout: Option<Duration>,
    /// Overrides the `SWITCHBOARD_EXPOSE_ERRORS` setting.
    pub expose_errors: Option<bool>,
}

impl std::fmt::Debug for AppOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppOptions")
            .field("name", &self.name)
            .field("language", &self.language)
            .field("version", &self.version)
            .field("settings", &crate::redact::Keys(&self.settings))
            .field("scale", &self.scale)
            .field("function_timeout", &self.function_timeout)
            .field("expose_errors", &self.expose_errors)
            .finish()
    }
}

/// The parts of host.json Switchboard reads; unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostJson {
    /// `version` as written (only `"2.0"` is accepted), `None` if absent.
    pub version: Option<String>,
    /// `functionTimeout` (default 5 minutes).
    pub function_timeout: Duration,
    /// `extensions.http.routePrefix` without leading or trailing `/` (default `api`).
    pub route_prefix: String,
    /// `customHandler`, for custom-handler workers (the core does not use it).
    pub custom_handler: Option<CustomHandler>,
}

impl Default for HostJson {
    fn default() -> Self {
        HostJson {
            version: None,
            function_timeout: DEFAULT_FUNCTION_TIMEOUT,
            route_prefix: "api".to_string(),
            custom_handler: None,
        }
    }
}

/// host.json `customHandler`: how a custom-handler worker starts the user's executable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomHandler {
    /// `description.defaultExecutablePath`, as written (relative to the app folder or absolute).
    pub default_executable_path: String,
    /// `description.arguments`.
    pub arguments: Vec<String>,
    /// `description.workingDirectory`; empty if not given.
    pub working_directory: String,
    /// `enableForwardingHttpRequest`.
    pub enable_forwarding_http_request: bool,
}

/// Turns the text of an app folder into an [`AppSpec`].
///
/// - Name: `options.name`, else the folder's last path component (see [`parse_app_name`]).
/// - Settings: local.settings.json `Values` overlaid by `options.settings`.
/// - Language: `options.language`, else the `FUNCTIONS_WORKER_RUNTIME` setting, else `custom`
///   if host.json has `customHandler`, else `python` if a `scriptFile` ends in `.py` or a
///   function folder holds `__init__.py`; lower-cased. Version: `options.version`, else the
///   `FUNCTIONS_WORKER_RUNTIME_VERSION` setting, else empty.
/// - Functions: sorted by name; the `AzureWebJobs.<name>.Disabled` setting (`true`/`1` or
///   `false`/`0`) overrides function.json `disabled`, and a timer `schedule` of the form
///   `%NAME%` is replaced by the setting `NAME`, as in Azure.
/// - Timeout, scale, expose_errors: options first, then host.json / settings
///   (`SWITCHBOARD_EXPOSE_ERRORS` = `true` or `1`), then defaults.
pub fn parse_app(files: &AppFiles, options: &AppOptions) -> Result<AppSpec, SpecError> {
    let app_file = app_file(&files.directory);
    check_directory(&files.directory)?;
    if files.functions.len() > MAX_FUNCTIONS {
        let count = files.functions.len();
        let problem = format!("too many functions: {count} (at most {MAX_FUNCTIONS})");
        return Err(SpecError::new(app_file, problem));
    }
    let host = match &files.host_json {
        Some(text) => parse_host_json(text)?,
        None => HostJson::default(),
    };
    let settings = merged_settings(files, options)?;
    let name = app_name(files, options)?;
    let language = choose_language(files, options, &host, &settings)?;
    let version = options
        .version
        .as_deref()
        .or_else(|| settings.get("FUNCTIONS_WORKER_RUNTIME_VERSION").map(String::as_str))
        .unwrap_or("")
        .trim()
        .to_string();
    if language == "custom" && host.custom_handler.is_none() {
        let problem = "the language is \"custom\" but host.json has no \"customHandler\" section";
        return Err(SpecError::new("host.json", problem));
    }
    let functions = parse_functions(files, &language, &settings)?;
    let function_timeout = match options.function_timeout {
        Some(timeout) => check_function_timeout(timeout)
            .map_err(|p| SpecError::new("deploy options", format!("function timeout {timeout:?}: {p}")))?,
        None => host.function_timeout,
    };
    let scale = options.scale.unwrap_or_default();
    check_scale(&scale).map_err(|p| SpecError::new("deploy options", p))?;
    let expose_errors = options.expose_errors.unwrap_or_else(|| {
        settings.get("SWITCHBOARD_EXPOSE_ERRORS").and_then(|v| parse_flag(v)) == Some(true)
    });
    Ok(AppSpec {
        name,
        language,
        version,
        directory: files.directory.clone(),
        functions,
        settings,
        scale,
        function_timeout,
        route_prefix: host.route_prefix,
        expose_errors,
    })
}

/// Validates an app name: 1–64 characters of `[A-Za-z0-9_-]`, not starting with `-` or `_`.
pub fn parse_app_name(name: &str) -> Result<AppName, SpecError> {
    check_name(name, MAX_APP_NAME_LEN)
        .map_err(|p| SpecError::new(format!("app name {}", quoted(name)), p))?;
    Ok(AppName::new_unchecked(name.to_string()))
}

/// Parses host.json. It must be a JSON object; unknown keys are ignored.
pub fn parse_host_json(text: &str) -> Result<HostJson, SpecError> {
    const FILE: &str = "host.json";
    let json = parse_json(FILE, text)?;
    host_json(&json).map_err(|p| SpecError::new(FILE, p))
}

/// Parses local.settings.json and returns its `Values`.
///
/// Values may be JSON strings, numbers or booleans (numbers and booleans are written as JSON
/// writes them); `null`, arrays and objects are errors, and so is `"IsEncrypted": true`.
pub fn parse_local_settings(text: &str) -> Result<BTreeMap<String, String>, SpecError> {
    const FILE: &str = "local.settings.json";
    let json = parse_json(FILE, text)?;
    local_settings(&json).map_err(|p| SpecError::new(FILE, p))
}

/// Parses one function folder. `app_dir` is the absolute app folder; `language` decides the
/// default `scriptFile` (`__init__.py` for `python`; none for `custom`; required otherwise).
pub fn parse_function(
    app_dir: &str,
    files: &FunctionFiles,
    language: &str,
) -> Result<FunctionSpec, SpecError> {
    check_name(&files.name, MAX_FUNCTION_NAME_LEN)
        .map_err(|p| SpecError::new(format!("function name {}", quoted(&files.name)), p))?;
    let file = function_file(&files.name);
    let json = parse_json(&file, &files.function_json)?;
    function_json(app_dir, files, language, &json).map_err(|p| SpecError::new(file, p))
}

/// Parses a route template such as `items/{id:int}/{*rest}` (leading and trailing `/` are
/// dropped; `""` is the root).
///
/// Segments are literals or whole-segment parameters: `{name}`, `{name?}` (last segment only),
/// `{name:constraint...}`, `{*name}` (last segment only). Parameters mixed with text in one
/// segment (`file{id}`), default values (`{id=1}`) and `{{`/`}}` escapes are not supported.
pub fn parse_route(template: &str) -> Result<RouteTemplate, SpecError> {
    route_template(template).map_err(|p| SpecError::new(format!("route {}", quoted(template)), p))
}

/// Parses a .NET TimeSpan: `hh:mm`, `hh:mm:ss`, `d.hh:mm:ss` or `hh:mm:ss.fffffff`.
///
/// Hours must be below 24, minutes and seconds below 60 (write a day as `1.00:00:00`).
/// Negative spans are rejected, and so is Azure's `-1` ("no limit"): Switchboard always
/// needs a bound.
pub fn parse_timespan(text: &str) -> Result<Duration, SpecError> {
    timespan(text).map_err(|p| SpecError::new(format!("timespan {}", quoted(text)), p))
}

// ----- app level -------------------------------------------------------------------------------

/// The `file` of an app-wide error: the app folder.
fn app_file(directory: &str) -> String {
    if directory.is_empty() { "app folder".to_string() } else { directory.to_string() }
}

/// `hello/function.json`, with anything odd in the name escaped.
fn function_file(name: &str) -> String {
    format!("{}/function.json", name.escape_debug())
}

/// The app folder must be a non-empty absolute path without NUL.
fn check_directory(directory: &str) -> Result<(), SpecError> {
    let bytes = directory.as_bytes();
    let windows_drive = bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes[2], b'/' | b'\\');
    let absolute = directory.starts_with('/') || directory.starts_with("\\\\") || windows_drive;
    if absolute && !directory.contains('\0') {
        return Ok(());
    }
    let problem = "must be an absolute path (the shell resolves the folder before parsing)";
    Err(SpecError::new(format!("app folder {}", quoted(directory)), problem))
}

/// The app name from the options or the folder name, validated.
fn app_name(files: &AppFiles, options: &AppOptions) -> Result<AppName, SpecError> {
    if let Some(name) = &options.name {
        return parse_app_name(name);
    }
    let folder = files.directory.trim_end_matches(['/', '\\']);
    let last = folder.rsplit(['/', '\\']).next().unwrap_or("");
    parse_app_name(last).map_err(|mut e| {
        e.problem.push_str(" (the app name defaults to the folder's name; give one when deploying)");
        e
    })
}

/// local.settings.json `Values` overlaid by the deploy settings, checked and counted.
fn merged_settings(files: &AppFiles, options: &AppOptions) -> Result<BTreeMap<String, String>, SpecError> {
    let mut settings = match &files.local_settings {
        Some(text) => parse_local_settings(text)?,
        None => BTreeMap::new(),
    };
    for (key, value) in &options.settings {
        check_setting(key, value).map_err(|p| SpecError::new("deploy settings", p))?;
        settings.insert(key.clone(), value.clone());
    }
    if settings.len() > MAX_SETTINGS {
        let problem = format!("too many settings: {} (at most {MAX_SETTINGS})", settings.len());
        return Err(SpecError::new("app settings", problem));
    }
    Ok(settings)
}

/// Chooses and checks the worker language (see [`parse_app`]).
fn choose_language(
    files: &AppFiles,
    options: &AppOptions,
    host: &HostJson,
    settings: &BTreeMap<String, String>,
) -> Result<String, SpecError> {
    let given = options
        .language
        .as_deref()
        .or_else(|| settings.get("FUNCTIONS_WORKER_RUNTIME").map(String::as_str))
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let language = match given {
        Some(language) => language.to_ascii_lowercase(),
        None if host.custom_handler.is_some() => "custom".to_string(),
        None if looks_like_python(files) => "python".to_string(),
        None => {
            let problem = "cannot tell the language: set FUNCTIONS_WORKER_RUNTIME in local.settings.json";
            return Err(SpecError::new(app_file(&files.directory), problem));
        }
    };
    let valid =
        language.len() <= 64 && language.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        let problem =
            format!("language {}: only letters, digits, '.', '-' and '_' are allowed", quoted(&language));
        return Err(SpecError::new(app_file(&files.directory), problem));
    }
    Ok(language)
}

/// Whether some function names a `.py` script or has an `__init__.py`.
fn looks_like_python(files: &AppFiles) -> bool {
    files.functions.iter().any(|function| {
        let script =
            serde_json::from_str::<Value>(strip_bom(&function.function_json)).ok().and_then(|json| {
                let object = json.as_object()?;
                field(object, "scriptFile")?.as_str().map(str::to_ascii_lowercase)
            });
        script.is_some_and(|s| s.ends_with(".py")) || function.files.iter().any(|f| f == "__init__.py")
    })
}

/// Parses every function (in name order, so the first error reported is deterministic),
/// rejects names that differ only in case, and applies the settings that concern functions.
fn parse_functions(
    files: &AppFiles,
    language: &str,
    settings: &BTreeMap<String, String>,
) -> Result<Vec<FunctionSpec>, SpecError> {
    if files.functions.is_empty() {
        let problem = "no functions: no subfolder has a function.json";
        return Err(SpecError::new(app_file(&files.directory), problem));
    }
    let mut sorted: Vec<&FunctionFiles> = files.functions.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let disabled = disabled_settings(settings);
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut functions = Vec::with_capacity(sorted.len());
    for function_files in sorted {
        let mut function = parse_function(&files.directory, function_files, language)?;
        if let Some(other) = seen.insert(function.name.to_ascii_lowercase(), &function_files.name) {
            let problem = if other == function.name {
                format!("two functions are named {}", quoted(other))
            } else {
                format!(
                    "functions {} and {} differ only in case (function names are \
                     case-insensitive)",
                    quoted(other),
                    quoted(&function.name)
                )
            };
            return Err(SpecError::new(app_file(&files.directory), problem));
        }
        apply_settings(&mut function, settings, &disabled)?;
        functions.push(function);
    }
    Ok(functions)
}

/// The `AzureWebJobs.<name>.Disabled` settings (any case), by lower-cased function name.
fn disabled_settings(settings: &BTreeMap<String, String>) -> BTreeMap<String, (&str, &str)> {
    const PREFIX: &str = "azurewebjobs.";
    const SUFFIX: &str = ".disabled";
    settings
        .iter()
        .filter_map(|(key, value)| {
            let lower = key.to_ascii_lowercase();
            let name = lower.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
            Some((name.to_string(), (key.as_str(), value.as_str())))
        })
        .collect()
}

/// Applies `AzureWebJobs.<name>.Disabled` and resolves a `%SETTING%` timer schedule. Errors name
/// the setting, never its value: settings are secrets, and errors reach logs and callers.
fn apply_settings(
    function: &mut FunctionSpec,
    settings: &BTreeMap<String, String>,
    disabled: &BTreeMap<String, (&str, &str)>,
) -> Result<(), SpecError> {
    if let Some((key, value)) = disabled.get(&function.name.to_ascii_lowercase()) {
        function.disabled = parse_flag(value).ok_or_else(|| {
            let problem = format!("setting {}: the value is not true, false, 1 or 0", quoted(key));
            SpecError::new("app settings", problem)
        })?;
    }
    if let Trigger::Timer { binding, schedule, .. } = &mut function.trigger
        && let Some(setting) = setting_reference(schedule)
    {
        let context = || format!("binding {}: schedule {}", quoted(binding), quoted(schedule));
        let resolved = settings.get(setting).ok_or_else(|| {
            let problem = format!("{}: the setting {} is not set", context(), quoted(setting));
            SpecError::new(function_file(&function.name), problem)
        })?;
        check_schedule(resolved).map_err(|p| {
            let problem = format!("{}: the value of the setting {} {p}", context(), quoted(setting));
            SpecError::new(function_file(&function.name), problem)
        })?;
        *schedule = resolved.clone();
    }
    Ok(())
}

/// `true`/`1` or `false`/`0`, ASCII case-insensitive.
fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// A function timeout must be more than zero and at most a day.
fn check_function_timeout(timeout: Duration) -> Result<Duration, String> {
    if timeout.is_zero() {
        Err("must be more than zero".to_string())
    } else if timeout > MAX_FUNCTION_TIMEOUT {
        Err("must be at most 1.00:00:00 (24 hours)".to_string())
    } else {
        Ok(timeout)
    }
}

/// Scale bounds must make sense: `min_workers <= max_workers` and `concurrency >= 1`.
fn check_scale(scale: &ScaleSpec) -> Result<(), String> {
    if scale.min_workers > scale.max_workers {
        return Err(format!(
            "scale: min_workers ({}) is more than max_workers ({})",
            scale.min_workers, scale.max_workers
        ));
    }
    if scale.concurrency == 0 {
        return Err("scale: concurrency must be at least 1".to_string());
    }
    Ok(())
}

/// Names shared by apps and functions: letters, digits, `-`, `_`; not starting with `-`/`_`.
fn check_name(name: &str, max_len: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("only letters, digits, '-' and '_' are allowed".to_string());
    }
    if name.len() > max_len {
        return Err(format!("at most {max_len} characters (this one has {})", name.len()));
    }
    if name.starts_with(['-', '_']) {
        return Err("must start with a letter or a digit".to_string());
    }
    Ok(())
}

/// Settings become environment variables: no empty name, no `=` in names, no NUL anywhere.
fn check_setting(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a setting has an empty name".to_string());
    }
    if key.contains('=') {
        return Err(format!(
            "setting {}: names cannot contain '=' (settings become environment variables)",
            quoted(key)
        ));
    }
    if key.contains('\0') {
        return Err(format!("setting {}: names cannot contain NUL", quoted(key)));
    }
    if value.contains('\0') {
        return Err(format!("setting {}: values cannot contain NUL", quoted(key)));
    }
    Ok(())
}

// ----- host.json and local.settings.json -------------------------------------------------------

/// host.json's object, read.
fn host_json(json: &Value) -> Result<HostJson, String> {
    let object = json.as_object().ok_or_else(|| must_be_object(json))?;
    let version = opt_string(object, "version")?;
    if let Some(version) = version
        && version != "2.0"
    {
        return Err(format!("\"version\" must be \"2.0\", not {}", quoted(version)));
    }
    let function_timeout = match opt_string(object, "functionTimeout")? {
        None => DEFAULT_FUNCTION_TIMEOUT,
        Some(text) => timespan(text)
            .and_then(check_function_timeout)
            .map_err(|p| format!("functionTimeout {}: {p}", quoted(text)))?,
    };
    Ok(HostJson {
        version: version.map(str::to_string),
        function_timeout,
        route_prefix: route_prefix(object)?,
        custom_handler: custom_handler(object)?,
    })
}

/// `extensions.http.routePrefix`: default `api`, may be empty, literal segments only.
fn route_prefix(host: &Map<String, Value>) -> Result<String, String> {
    let Some(extensions) = opt_object(host, "extensions")? else {
        return Ok("api".into());
    };
    let Some(http) = opt_object(extensions, "http").map_err(|p| format!("extensions: {p}"))? else {
        return Ok("api".into());
    };
    let Some(prefix) = opt_string(http, "routePrefix").map_err(|p| format!("extensions.http: {p}"))? else {
        return Ok("api".into());
    };
    let trimmed = prefix.trim_matches('/');
    if !trimmed.is_empty() {
        for segment in trimmed.split('/') {
            check_literal(segment)
                .map_err(|p| format!("extensions.http.routePrefix {}: {p}", quoted(prefix)))?;
        }
    }
    Ok(trimmed.to_string())
}

/// `customHandler`, if present.
fn custom_handler(host: &Map<String, Value>) -> Result<Option<CustomHandler>, String> {
    let Some(handler) = opt_object(host, "customHandler")? else {
        return Ok(None);
    };
    let in_handler = |p: String| format!("customHandler: {p}");
    let in_description = |p: String| format!("customHandler.description: {p}");
    let description = opt_object(handler, "description")
        .map_err(in_handler)?
        .ok_or_else(|| in_handler("missing \"description\"".to_string()))?;
    let default_executable_path = req_string(description, "defaultExecutablePath").map_err(in_description)?;
    if default_executable_path.is_empty() || default_executable_path.contains('\0') {
        let problem = "\"defaultExecutablePath\" must be a non-empty path without NUL";
        return Err(in_description(problem.to_string()));
    }
    let arguments = match field(description, "arguments") {
        None => Vec::new(),
        Some(value) => string_array(value).map_err(|p| in_description(format!("arguments: {p}")))?,
    };
    let working_directory = opt_string(description, "workingDirectory").map_err(in_description)?;
    Ok(Some(CustomHandler {
        default_executable_path: default_executable_path.to_string(),
        arguments,
        working_directory: working_directory.unwrap_or("").to_string(),
        enable_forwarding_http_request: opt_bool(handler, "enableForwardingHttpRequest")
            .map_err(in_handler)?
            .unwrap_or(false),
    }))
}

/// local.settings.json's object, read: its `Values`.
fn local_settings(json: &Value) -> Result<BTreeMap<String, String>, String> {
    let object = json.as_object().ok_or_else(|| must_be_object(json))?;
    if opt_bool(object, "IsEncrypted")? == Some(true) {
        return Err("\"IsEncrypted\" is true: decrypt the values first (func settings decrypt)".to_string());
    }
    let Some(values) = opt_object(object, "Values")? else {
        return Ok(BTreeMap::new());
    };
    if values.len() > MAX_SETTINGS {
        return Err(format!("too many Values: {} (at most {MAX_SETTINGS})", values.len()));
    }
    let mut settings = BTreeMap::new();
    for (key, value) in values {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => {
                return Err(format!("Values.{}: null is not a value (write \"\")", quoted(key)));
            }
            other => {
                return Err(format!(
                    "Values.{}: must be a string, number or boolean, not {}",
                    quoted(key),
                    kind(other)
                ));
            }
        };
        check_setting(key, &text).map_err(|p| format!("Values: {p}"))?;
        settings.insert(key.clone(), text);
    }
    Ok(settings)
}

// ----- function.json ---------------------------------------------------------------------------

/// function.json's object, read.
fn function_json(
    app_dir: &str,
    files: &FunctionFiles,
    language: &str,
    json: &Value,
) -> Result<FunctionSpec, String> {
    let object = json.as_object().ok_or_else(|| must_be_object(json))?;
    let script_file = script_file(app_dir, files, language, object)?;
    let entry_point = opt_string(object, "entryPoint")?.unwrap_or("").to_string();
    let disabled = opt_bool(object, "disabled")?.unwrap_or(false);
    let (bindings, trigger) = parse_bindings(object, &files.name)?;
    let retry = match field(object, "retry") {
        None => None,
        Some(value) => Some(parse_retry(value).map_err(|p| format!("retry: {p}"))?),
    };
    Ok(FunctionSpec {
        name: files.name.clone(),
        directory: join(app_dir, &files.name),
        script_file,
        entry_point,
        trigger,
        bindings,
        retry,
        disabled,
    })
}

/// The absolute script path: `scriptFile` resolved against the function folder.
fn script_file(
    app_dir: &str,
    files: &FunctionFiles,
    language: &str,
    function: &Map<String, Value>,
) -> Result<String, String> {
    let written = match opt_string(function, "scriptFile")? {
        Some(written) if !written.is_empty() => written,
        _ => match language {
            "python" => "__init__.py",
            "custom" => return Ok(String::new()),
            other => {
                return Err(format!("missing \"scriptFile\" (required for language {other:?})"));
            }
        },
    };
    let parts = resolve_script(&files.name, written)?;
    if let Some((first, inner)) = parts.split_first()
        && *first == files.name
    {
        let inner = inner.join("/");
        if !files.files.contains(&inner) {
            return Err(format!("scriptFile {} does not exist in {}/", quoted(written), files.name));
        }
    }
    Ok(join(app_dir, &parts.join("/")))
}

/// Resolves `scriptFile` to components relative to the app folder; it must stay inside it.
fn resolve_script<'a>(function: &'a str, written: &'a str) -> Result<Vec<&'a str>, String> {
    let bytes = written.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if written.starts_with(['/', '\\']) || drive {
        return Err(format!("scriptFile {} must be a path relative to the function folder", quoted(written)));
    }
    if written.contains('\0') {
        return Err(format!("scriptFile {} contains NUL", quoted(written)));
    }
    let mut parts = vec![function];
    for component in written.split(['/', '\\']) {
        match component {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("scriptFile {} points outside the app folder", quoted(written)));
                }
            }
            name => parts.push(name),
        }
    }
    if parts.len() <= 1 && parts.first().is_none_or(|p| *p == function) {
        return Err(format!("scriptFile {} names a folder, not a file", quoted(written)));
    }
    Ok(parts)
}

/// `app_dir/relative`, without doubling a trailing separator.
fn join(app_dir: &str, relative: &str) -> String {
    if app_dir.ends_with(['/', '\\']) {
        format!("{app_dir}{relative}")
    } else {
        format!("{app_dir}/{relative}")
    }
}

/// `bindings`: every binding in order, and the one trigger.
fn parse_bindings(
    function: &Map<String, Value>,
    function_name: &str,
) -> Result<(Vec<BindingSpec>, Trigger), String> {
    let list = match field(function, "bindings") {
        None => return Err("missing \"bindings\"".to_string()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(format!("\"bindings\" must be an array, not {}", kind(other)));
        }
    };
    if list.len() > MAX_BINDINGS {
        return Err(format!("too many bindings: {} (at most {MAX_BINDINGS})", list.len()));
    }
    let mut specs: Vec<BindingSpec> = Vec::with_capacity(list.len());
    let mut trigger: Option<Trigger> = None;
    let mut names = BTreeSet::new();
    for (index, value) in list.iter().enumerate() {
        let (spec, this_trigger) = parse_binding(index, value, function_name)?;
        if !names.insert(spec.name.to_ascii_lowercase()) {
            return Err(format!(
                "bindings[{index}]: two bindings are named {} (names are case-insensitive)",
                quoted(&spec.name)
            ));
        }
        if let Some(this_trigger) = this_trigger {
            if let Some(first) = &trigger {
                return Err(format!(
                    "more than one trigger: {} and {} (a function has exactly one)",
                    quoted(trigger_binding(first)),
                    quoted(&spec.name)
                ));
            }
            trigger = Some(this_trigger);
        }
        specs.push(spec);
    }
    let trigger = trigger.ok_or_else(|| {
        "no trigger binding (exactly one binding's type must end in \"Trigger\")".to_string()
    })?;
    Ok((specs, trigger))
}

/// The binding name of a trigger.
fn trigger_binding(trigger: &Trigger) -> &str {
    match trigger {
        Trigger::Http(http) => &http.binding,
        Trigger::Timer { binding, .. } | Trigger::Other { binding, .. } => binding,
    }
}

/// One binding; `Some(trigger)` if it is the trigger.
fn parse_binding(
    index: usize,
    value: &Value,
    function_name: &str,
) -> Result<(BindingSpec, Option<Trigger>), String> {
    let at = |p: String| format!("bindings[{index}]: {p}");
    let object = value.as_object().ok_or_else(|| at(format!("must be an object, not {}", kind(value))))?;
    let kind_written = req_string(object, "type").map_err(at)?;
    if kind_written.is_empty() {
        return Err(at("\"type\" must not be empty".to_string()));
    }
    let direction = match opt_string(object, "direction").map_err(at)? {
        None => Direction::In,
        Some(text) => parse_direction(text).map_err(at)?,
    };
    let name = req_string(object, "name").map_err(at)?;
    if name.is_empty() {
        return Err(at("\"name\" must not be empty".to_string()));
    }
    if name.eq_ignore_ascii_case("$return") && direction != Direction::Out {
        return Err(at("\"$return\" is only allowed for an output binding".to_string()));
    }
    // The worker matches `$return` and binding types case-sensitively: spell the ones
    // Switchboard understands canonically (`raw` keeps the text as written).
    let name = if name.eq_ignore_ascii_case("$return") { "$return" } else { name };
    let lower = kind_written.to_ascii_lowercase();
    let kind_canonical = match lower.as_str() {
        "httptrigger" => "httpTrigger",
        "timertrigger" => "timerTrigger",
        "http" => "http",
        _ => kind_written,
    };
    let data_type = opt_string(object, "dataType").map_err(at)?.map(str::to_string);
    let raw = serde_json::to_string(value).map_err(|e| at(format!("cannot re-serialize: {e}")))?;
    let spec =
        BindingSpec { name: name.to_string(), kind: kind_canonical.to_string(), direction, data_type, raw };
    let named = |p: &str| format!("binding {} of type {} {p}", quoted(name), quoted(kind_written));
    if lower.ends_with("trigger") {
        if direction != Direction::In {
            return Err(named("must have direction \"in\""));
        }
        let in_binding = |p: String| format!("binding {}: {p}", quoted(name));
        let trigger = match lower.as_str() {
            "httptrigger" => Trigger::Http(http_trigger(object, name, function_name).map_err(in_binding)?),
            "timertrigger" => timer_trigger(object, name).map_err(in_binding)?,
            _ => Trigger::Other { binding: name.to_string(), kind: kind_written.to_string() },
        };
        return Ok((spec, Some(trigger)));
    }
    if lower == "http" {
        if direction != Direction::Out {
            return Err(named("must have direction \"out\""));
        }
        return Ok((spec, None));
    }
    Err(named("is not supported by Switchboard (only trigger, http output and $return bindings)"))
}

/// `in`, `out` or `inout`, ASCII case-insensitive.
fn parse_direction(text: &str) -> Result<Direction, String> {
    match text.to_ascii_lowercase().as_str() {
        "in" => Ok(Direction::In),
        "out" => Ok(Direction::Out),
        "inout" => Ok(Direction::InOut),
        _ => Err(format!("\"direction\" must be \"in\", \"out\" or \"inout\", not {}", quoted(text))),
    }
}

/// An `httpTrigger`'s route, methods and auth level.
fn http_trigger(
    binding: &Map<String, Value>,
    name: &str,
    function_name: &str,
) -> Result<HttpTrigger, String> {
    let template = match opt_string(binding, "route")? {
        None | Some("") => function_name,
        Some(route) => route,
    };
    let route = route_template(template).map_err(|p| format!("route {}: {p}", quoted(template)))?;
    let mut methods: Vec<String> = Vec::new();
    if let Some(value) = field(binding, "methods") {
        for method in string_array(value).map_err(|p| format!("methods: {p}"))? {
            let upper = method.trim().to_ascii_uppercase();
            if !HTTP_METHODS.contains(&upper.as_str()) {
                return Err(format!("method {} is not one of {}", quoted(&method), HTTP_METHODS.join(", ")));
            }
            if !methods.contains(&upper) {
                methods.push(upper);
            }
        }
    }
    let auth_level = opt_string(binding, "authLevel")?.unwrap_or("function").to_string();
    Ok(HttpTrigger { binding: name.to_string(), route, methods, auth_level })
}

/// A `timerTrigger`: its schedule (six NCRONTAB fields, or `%SETTING%`) and `runOnStartup`.
fn timer_trigger(binding: &Map<String, Value>, name: &str) -> Result<Trigger, String> {
    let schedule = req_string(binding, "schedule")?;
    if setting_reference(schedule).is_none() {
        check_schedule(schedule).map_err(|p| format!("schedule {}: {p}", quoted(schedule)))?;
    }
    Ok(Trigger::Timer {
        binding: name.to_string(),
        schedule: schedule.to_string(),
        run_on_startup: opt_bool(binding, "runOnStartup")?.unwrap_or(false),
    })
}

/// `%NAME%` → `NAME`: a schedule taken from an app setting.
fn setting_reference(schedule: &str) -> Option<&str> {
    let inner = schedule.trim().strip_prefix('%')?.strip_suffix('%')?;
    (!inner.is_empty() && !inner.contains('%')).then_some(inner)
}

/// An NCRONTAB schedule has six space-separated fields.
fn check_schedule(schedule: &str) -> Result<(), String> {
    let fields = schedule.split_whitespace().count();
    if fields == 6 {
        Ok(())
    } else {
        Err(format!("has {fields} fields; NCRONTAB needs 6 (second minute hour day month day-of-week)"))
    }
}

/// function.json `retry`.
fn parse_retry(value: &Value) -> Result<RetryPolicy, String> {
    let object = value.as_object().ok_or_else(|| format!("must be an object, not {}", kind(value)))?;
    let strategy = req_string(object, "strategy")?;
    let max_retries = max_retry_count(object)?;
    let strategy = match strategy.to_ascii_lowercase().as_str() {
        "fixeddelay" => RetryStrategy::Fixed(interval(object, "delayInterval", strategy)?),
        "exponentialbackoff" => {
            let min = interval(object, "minimumInterval", strategy)?;
            let max = interval(object, "maximumInterval", strategy)?;
            if min > max {
                return Err(format!("minimumInterval ({min:?}) is more than maximumInterval ({max:?})"));
            }
            RetryStrategy::Exponential { min, max }
        }
        _ => {
            return Err(format!(
                "\"strategy\" must be \"fixedDelay\" or \"exponentialBackoff\", not {}",
                quoted(strategy)
            ));
        }
    };
    Ok(RetryPolicy { max_retries, strategy })
}

/// `maxRetryCount`: an integer >= -1 (or a string holding one); -1 and values above the cap
/// become [`MAX_RETRY_COUNT`].
fn max_retry_count(retry: &Map<String, Value>) -> Result<u32, String> {
    let value = field(retry, "maxRetryCount").ok_or("missing \"maxRetryCount\"")?;
    let count: Option<i128> = match value {
        Value::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.trim().parse::<i128>().ok(),
        _ => None,
    };
    match count {
        Some(-1) => Ok(MAX_RETRY_COUNT),
        Some(n) if n >= 0 => Ok(u32::try_from(n).unwrap_or(u32::MAX).min(MAX_RETRY_COUNT)),
        _ => Err(format!("\"maxRetryCount\" must be an integer >= -1, not {}", describe(value))),
    }
}

/// A retry interval: a timespan the strategy requires.
fn interval(retry: &Map<String, Value>, key: &str, strategy: &str) -> Result<Duration, String> {
    let text = opt_string(retry, key)?
        .ok_or_else(|| format!("missing \"{key}\" (required by strategy {})", quoted(strategy)))?;
    timespan(text).map_err(|p| format!("{key} {}: {p}", quoted(text)))
}

// ----- routes and timespans --------------------------------------------------------------------

/// See [`parse_timespan`].
fn timespan(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str =
        "expected a .NET TimeSpan: hh:mm:ss, d.hh:mm:ss or hh:mm:ss.fffffff (e.g. \"00:05:00\")";
    let text = text.trim();
    if text == "-1" {
        return Err("\"-1\" (no limit) is not accepted here: give a bounded timespan such as \
                    \"00:10:00\""
            .to_string());
    }
    if text.starts_with('-') {
        return Err("negative timespans are not allowed".to_string());
    }
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(EXPECTED.to_string());
    }
    let (days, hours) = match parts[0].split_once('.') {
        Some((days, hours)) => (number(days, 10_675_199)?, number(hours, 23)?),
        None => (0, number(parts[0], 23)?),
    };
    let minutes = number(parts[1], 59)?;
    let (seconds, nanos) = match parts.get(2) {
        None => (0, 0),
        Some(part) => match part.split_once('.') {
            Some((seconds, fraction)) => (number(seconds, 59)?, fraction_nanos(fraction)?),
            None => (number(part, 59)?, 0),
        },
    };
    let total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds;
    Ok(Duration::new(total, nanos))
}

/// A timespan component: 1–8 digits, at most `max`.
fn number(text: &str, max: u64) -> Result<u64, String> {
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{} is not a number (expected hh:mm:ss, d.hh:mm:ss or hh:mm:ss.fff)",
            quoted(text)
        ));
    }
    let value: u64 = text.parse().map_err(|_| format!("{} is not a number", quoted(text)))?;
    if value > max {
        return Err(format!("{value} is out of range (at most {max}; write a day as 1.00:00:00)"));
    }
    Ok(value)
}

/// Fractional seconds: 1–7 digits, as .NET allows.
fn fraction_nanos(text: &str) -> Result<u32, String> {
    if text.is_empty() || text.len() > 7 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("fraction {} must be 1 to 7 digits", quoted(text)));
    }
    let padded = format!("{text:0<9}");
    padded.parse().map_err(|_| format!("fraction {} is not a number", quoted(text)))
}

// ----- JSON helpers ----------------------------------------------------------------------------

/// Parses JSON text (a leading UTF-8 BOM, which Windows editors write, is skipped).
fn parse_json(file: &str, text: &str) -> Result<Value, SpecError> {
    serde_json::from_str(strip_bom(text)).map_err(|e| {
        let message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&suffix).unwrap_or(&message);
        SpecError::new(file, format!("invalid JSON at line {} column {}: {message}", e.line(), e.column()))
    })
}

/// The text without a leading byte-order mark.
fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// `key`'s value: exact key first, else ASCII case-insensitive; `null` counts as absent.
fn field<'v>(object: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    object
        .get(key)
        .or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

/// An optional string field.
fn opt_string<'v>(object: &'v Map<String, Value>, key: &str) -> Result<Option<&'v str>, String> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("\"{key}\" must be a string, not {}", kind(other))),
    }
}

/// A required string field.
fn req_string<'v>(object: &'v Map<String, Value>, key: &str) -> Result<&'v str, String> {
    opt_string(object, key)?.ok_or_else(|| format!("missing \"{key}\""))
}

/// An optional boolean field; the strings `"true"` and `"false"` count too.
fn opt_bool(object: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(format!("\"{key}\" must be true or false, not {}", describe(other))),
    }
}

/// An optional object field.
fn opt_object<'v>(
    object: &'v Map<String, Value>,
    key: &str,
) -> Result<Option<&'v Map<String, Value>>, String> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(other) => Err(format!("\"{key}\" must be an object, not {}", kind(other))),
    }
}

/// An array of strings.
fn string_array(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!("must be an array of strings, not {}", kind(value)));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("must be an array of strings, but holds {}", kind(other))),
        })
        .collect()
}

/// "must be a JSON object" for a whole file.
fn must_be_object(value: &Value) -> String {
    format!("must be a JSON object, not {}", kind(value))
}

/// A JSON value for a message: strings quoted, numbers and booleans as written, others by kind.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => quoted(s),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        other => kind(other).to_string(),
    }
}

/// A JSON value's kind, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text` quoted and escaped for a message, cut after 100 characters.
pub(crate) fn quoted(text: &str) -> String {
    const LIMIT: usize = 100;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::app::route::RouteMatch;
    use crate::app::spec::RouteSegment;

    const APP_DIR: &str = "/srv/apps/shop";

    const HOST_JSON: &str = r#"{
  "version": "2.0",
  "logging": { "logLevel": { "default": "Information" } },
  "extensionBundle": {
    "id": "Microsoft.Azure.Functions.ExtensionBundle",
    "version": "[4.*, 5.0.0)"
  },
  "functionTimeout": "00:02:30"
}"#;

    const LOCAL_SETTINGS: &str = r#"{
  "IsEncrypted": false,
  "Values": {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "FUNCTIONS_WORKER_RUNTIME_VERSION": "3.11",
    "AzureWebJobsStorage": "",
    "GREETING": "hello from shop",
    "MAX_ITEMS": 50,
    "FEATURE_ON": true
  },
  "Host": { "LocalHttpPort": 7071 }
}"#;

    const GET_ITEM: &str = r#"{
  "scriptFile": "__init__.py",
  "bindings": [
    {
      "authLevel": "anonymous",
      "type": "httpTrigger",
      "direction": "in",
      "name": "req",
      "route": "items/{id:int}",
      "methods": ["get"]
    },
    { "type": "http", "direction": "out", "name": "$return" }
  ]
}"#;

    const CREATE_ITEM: &str = r#"{
  "scriptFile": "main.py",
  "entryPoint": "create",
  "bindings": [
    { "authLevel": "function", "type": "httpTrigger", "direction": "in", "name": "req",
      "methods": ["post"], "dataType": "binary" },
    { "type": "http", "direction": "out", "name": "res" }
  ]
}"#;

    /// A function folder holding `__init__.py` and `main.py`.
    fn function(name: &str, function_json: &str) -> FunctionFiles {
        FunctionFiles {
            name: name.to_string(),
            function_json: function_json.to_string(),
            files: vec!["__init__.py".to_string(), "main.py".to_string()],
        }
    }

    /// A function.json with an anonymous HTTP trigger plus `extra` bindings.
    fn http_json(extra: &str) -> String {
        format!(r#"{{"bindings": [{{"type": "httpTrigger", "direction": "in", "name": "req"}}{extra}]}}"#)
    }

    /// The realistic app: two functions, host.json and local.settings.json.
    fn shop() -> AppFiles {
        AppFiles {
            directory: APP_DIR.to_string(),
            host_json: Some(HOST_JSON.to_string()),
            local_settings: Some(LOCAL_SETTINGS.to_string()),
            functions: vec![function("get_item", GET_ITEM), function("create_item", CREATE_ITEM)],
        }
    }

    /// An app with one function.json as given.
    fn one_function(function_json: &str) -> AppFiles {
        AppFiles { functions: vec![function("hello", function_json)], ..shop() }
    }

    fn app_error(files: &AppFiles) -> String {
        app_error_with(files, &AppOptions::default())
    }

    fn app_error_with(files: &AppFiles, options: &AppOptions) -> String {
        parse_app(files, options).expect_err("expected an error").to_string()
    }

    /// The error for a function.json, checked to name `hello/function.json`.
    fn function_error(function_json: &str) -> String {
        let error = parse_function(APP_DIR, &function("hello", function_json), "python")
            .expect_err("expected an error");
        assert_eq!(error.file, "hello/function.json");
        error.to_string()
    }

    fn host_error(text: &str) -> String {
        parse_host_json(text).expect_err("expected an error").to_string()
    }

    fn settings_error(text: &str) -> String {
        parse_local_settings(text).expect_err("expected an error").to_string()
    }

    // ----- a realistic app -----------------------------------------------------------------

    #[test]
    fn realistic_python_app() {
        let app = parse_app(&shop(), &AppOptions::default()).unwrap();
        assert_eq!(app.name.as_str(), "shop");
        assert_eq!(app.language, "python");
        assert_eq!(app.version, "3.11");
        assert_eq!(app.directory, APP_DIR);
        assert_eq!(app.function_timeout, Duration::from_secs(150));
        assert_eq!(app.route_prefix, "api");
        assert!(!app.expose_errors);
        assert_eq!(app.scale, ScaleSpec::default());
        assert_eq!(app.settings["GREETING"], "hello from shop");
        assert_eq!(app.settings["MAX_ITEMS"], "50");
        assert_eq!(app.settings["FEATURE_ON"], "true");
        assert_eq!(app.settings["AzureWebJobsStorage"], "");
        assert!(!app.settings.contains_key("LocalHttpPort"));

        let names: Vec<&str> = app.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["create_item", "get_item"]);

        let create = &app.functions[0];
        assert_eq!(create.directory, "/srv/apps/shop/create_item");
        assert_eq!(create.script_file, "/srv/apps/shop/create_item/main.py");
        assert_eq!(create.entry_point, "create");
        assert_eq!(create.trigger_name(), "req");
        assert_eq!(create.http_output(), Some("res"));
        assert_eq!(create.bindings[0].data_type.as_deref(), Some("binary"));
        let Trigger::Http(http) = &create.trigger else { panic!("not http") };
        assert_eq!(http.route.raw, "create_item");
        assert_eq!(http.methods, ["POST"]);
        assert_eq!(http.auth_level, "function");

        let get = &app.functions[1];
        assert_eq!(get.script_file, "/srv/apps/shop/get_item/__init__.py");
        assert_eq!(get.entry_point, "");
        assert_eq!(get.http_output(), Some("$return"));
        assert!(!get.disabled);
        assert_eq!(get.retry, None);
        assert_eq!(get.bindings.len(), 2);
        assert_eq!(get.bindings[1].direction, Direction::Out);
        let raw: Value = serde_json::from_str(&get.bindings[0].raw).unwrap();
        assert_eq!(raw["route"], "items/{id:int}");
        assert_eq!(raw["authLevel"], "anonymous");
        let Trigger::Http(http) = &get.trigger else { panic!("not http") };
        assert_eq!(http.methods, ["GET"]);
        assert_eq!(http.auth_level, "anonymous");
        assert_eq!(
            http.route.segments,
            [
                RouteSegment::Literal("items".to_string()),
                RouteSegment::Param {
                    name: "id".to_string(),
                    optional: false,
                    constraint: Some("int".to_string())
                },
            ]
        );

        let params = vec![("id".to_string(), "42".to_string())];
        assert_eq!(app.match_http("GET", "api/items/42"), RouteMatch::Found { function: get, params });
        assert_eq!(app.match_http("GET", "api/items/x"), RouteMatch::NotFound);
        assert_eq!(app.match_http("DELETE", "api/items/42"), RouteMatch::MethodNotAllowed);
        assert!(matches!(
            app.match_http("POST", "api/create_item"),
            RouteMatch::Found { function, .. } if function.name == "create_item"
        ));
    }

    #[test]
    fn options_override_the_folder() {
        let mut options = AppOptions {
            name: Some("shop-2".to_string()),
            language: Some("Python".to_string()),
            version: Some("3.12".to_string()),
            scale: Some(ScaleSpec { min_workers: 1, max_workers: 2, concurrency: 4, queue_limit: 9 }),
            function_timeout: Some(Duration::from_secs(30)),
            expose_errors: Some(true),
            ..AppOptions::default()
        };
        options.settings.insert("GREETING".to_string(), "overridden".to_string());
        options.settings.insert("EXTRA".to_string(), "x".to_string());
        let app = parse_app(&shop(), &options).unwrap();
        assert_eq!(app.name.as_str(), "shop-2");
        assert_eq!(app.language, "python");
        assert_eq!(app.version, "3.12");
        assert_eq!(app.scale.max_workers, 2);
        assert_eq!(app.function_timeout, Duration::from_secs(30));
        assert!(app.expose_errors);
        assert_eq!(app.settings["GREETING"], "overridden");
        assert_eq!(app.settings["EXTRA"], "x");
        assert_eq!(app.settings["MAX_ITEMS"], "50");
    }

    #[test]
    fn defaults_without_host_json_or_local_settings() {
        let files = AppFiles {
            host_json: None,
            local_settings: None,
            directory: "/srv/apps/shop/".to_string(),
            ..one_function(&http_json(""))
        };
        let app = parse_app(&files, &AppOptions::default()).unwrap();
        assert_eq!(app.name.as_str(), "shop");
        assert_eq!(app.language, "python", "guessed from __init__.py");
        assert_eq!(app.version, "");
        assert_eq!(app.function_timeout, DEFAULT_FUNCTION_TIMEOUT);
        assert_eq!(app.route_prefix, "api");
        assert!(app.settings.is_empty());
        assert_eq!(app.functions[0].script_file, "/srv/apps/shop/hello/__init__.py");
        let Trigger::Http(http) = &app.functions[0].trigger else { panic!("not http") };
        assert_eq!(http.route.raw, "hello");
        assert!(http.methods.is_empty());
        assert_eq!(http.auth_level, "function");
        assert_eq!(app.functions[0].http_output(), None);
    }

    #[test]
    fn expose_errors_from_settings() {
        for (value, expected) in [("true", true), ("1", true), ("TRUE", true), ("no", false)] {
            let mut options = AppOptions::default();
            options.settings.insert("SWITCHBOARD_EXPOSE_ERRORS".to_string(), value.to_string());
            let app = parse_app(&shop(), &options).unwrap();
            assert_eq!(app.expose_errors, expected, "{value}");
        }
    }

    // ----- app level -----------------------------------------------------------------------

    #[test]
    fn app_name_rules() {
        assert_eq!(parse_app_name("shop-2_b").unwrap().as_str(), "shop-2_b");
        assert_eq!(parse_app_name("9lives").unwrap().as_str(), "9lives");
        let long = "a".repeat(64);
        assert_eq!(parse_app_name(&long).unwrap().as_str(), long);
        let cases = [
            ("../x", r#"app name "../x": only letters, digits, '-' and '_' are allowed"#),
            ("a/b", r#"app name "a/b": only letters, digits, '-' and '_' are allowed"#),
            ("a\0b", r#"app name "a\0b": only letters, digits, '-' and '_' are allowed"#),
            ("..", r#"app name "..": only letters, digits, '-' and '_' are allowed"#),
            ("é", r#"app name "é": only letters, digits, '-' and '_' are allowed"#),
            ("", r#"app name "": must not be empty"#),
            ("-x", r#"app name "-x": must start with a letter or a digit"#),
            ("_x", r#"app name "_x": must start with a letter or a digit"#),
        ];
        for (name, message) in cases {
            assert_eq!(parse_app_name(name).unwrap_err().to_string(), message);
        }
        let too_long = "a".repeat(65);
        assert!(
            parse_app_name(&too_long)
                .unwrap_err()
                .to_string()
                .ends_with(": at most 64 characters (this one has 65)")
        );
    }

    #[test]
    fn app_name_from_the_folder() {
        let files = AppFiles { directory: "/srv/apps/my.app".to_string(), ..shop() };
        assert_eq!(
            app_error(&files),
            "app name \"my.app\": only letters, digits, '-' and '_' are allowed \
             (the app name defaults to the folder's name; give one when deploying)"
        );
        let options = AppOptions { name: Some("ok".to_string()), ..AppOptions::default() };
        assert_eq!(parse_app(&files, &options).unwrap().name.as_str(), "ok");
        let options = AppOptions { name: Some("../x".to_string()), ..AppOptions::default() };
        assert_eq!(
            app_error_with(&files, &options),
            r#"app name "../x": only letters, digits, '-' and '_' are allowed"#
        );
    }

    #[test]
    fn app_folder_must_be_absolute() {
        let files = AppFiles { directory: "apps/shop".to_string(), ..shop() };
        assert_eq!(
            app_error(&files),
            "app folder \"apps/shop\": must be an absolute path (the shell resolves the folder \
             before parsing)"
        );
        let files = AppFiles { directory: "C:\\apps\\shop".to_string(), ..shop() };
        let app = parse_app(&files, &AppOptions::default()).unwrap();
        assert_eq!(app.name.as_str(), "shop");
        assert_eq!(app.functions[1].script_file, "C:\\apps\\shop/get_item/__init__.py");
    }

    #[test]
    fn no_functions() {
        let files = AppFiles { functions: Vec::new(), ..shop() };
        assert_eq!(app_error(&files), "/srv/apps/shop: no functions: no subfolder has a function.json");
    }

    #[test]
    fn too_many_functions() {
        let functions = (0..=MAX_FUNCTIONS).map(|i| function(&format!("f{i}"), "")).collect();
        let files = AppFiles { functions, ..shop() };
        assert_eq!(app_error(&files), "/srv/apps/shop: too many functions: 1001 (at most 1000)");
    }

    #[test]
    fn function_names() {
        let files = AppFiles { functions: vec![function("a.b", GET_ITEM)], ..shop() };
        assert_eq!(
            app_error(&files),
            r#"function name "a.b": only letters, digits, '-' and '_' are allowed"#
        );
        let files = AppFiles { functions: vec![function("", GET_ITEM)], ..shop() };
        assert_eq!(app_error(&files), r#"function name "": must not be empty"#);
        let files = AppFiles { functions: vec![function("with-dash", GET_ITEM)], ..shop() };
        assert_eq!(parse_app(&files, &AppOptions::default()).unwrap().functions[0].name, "with-dash");
    }

    #[test]
    fn duplicate_function_names() {
        let files =
            AppFiles { functions: vec![function("hello", GET_ITEM), function("hello", GET_ITEM)], ..shop() };
        assert_eq!(app_error(&files), r#"/srv/apps/shop: two functions are named "hello""#);
        let files =
            AppFiles { functions: vec![function("hello", GET_ITEM), function("Hello", GET_ITEM)], ..shop() };
        assert_eq!(
            app_error(&files),
            "/srv/apps/shop: functions \"Hello\" and \"hello\" differ only in case (function \
             names are case-insensitive)"
        );
    }

    #[test]
    fn first_error_is_in_name_order() {
        let files = AppFiles { functions: vec![function("zeta", "{"), function("alpha", "[]")], ..shop() };
        assert_eq!(app_error(&files), "alpha/function.json: must be a JSON object, not an array");
    }

    #[test]
    fn language_detection() {
        let no_settings = |files: AppFiles| AppFiles { local_settings: None, ..files };
        // custom from host.json
        let host =
            r#"{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "handler"}}}"#;
        let files =
            AppFiles { host_json: Some(host.to_string()), ..no_settings(one_function(&http_json(""))) };
        let app = parse_app(&files, &AppOptions::default()).unwrap();
        assert_eq!(app.language, "custom");
        assert_eq!(app.functions[0].script_file, "", "custom needs no script");
        // python from a .py scriptFile, without __init__.py
        let mut files = no_settings(one_function(GET_ITEM));
        files.functions[0].files = vec!["__init__.py".to_string()];
        files.functions[0].function_json = CREATE_ITEM.replace("main.py", "app.PY");
        files.functions[0].files = vec!["app.PY".to_string()];
        assert_eq!(parse_app(&files, &AppOptions::default()).unwrap().language, "python");
        // nothing to go on
        files.functions[0].function_json = http_json("");
        files.functions[0].files = vec!["run.sh".to_string()];
        assert_eq!(
            app_error(&files),
            "/srv/apps/shop: cannot tell the language: set FUNCTIONS_WORKER_RUNTIME in \
             local.settings.json"
        );
        // other languages need a scriptFile
        let options = AppOptions { language: Some("node".to_string()), ..AppOptions::default() };
        assert_eq!(
            app_error_with(&files, &options),
            r#"hello/function.json: missing "scriptFile" (required for language "node")"#
        );
        let options = AppOptions { language: Some("py thon".to_string()), ..AppOptions::default() };
        assert_eq!(
            app_error_with(&files, &options),
            r#"/srv/apps/shop: language "py thon": only letters, digits, '.', '-' and '_' are allowed"#
        );
    }

    #[test]
    fn custom_language_needs_a_custom_handler() {
        let options = AppOptions { language: Some("custom".to_string()), ..AppOptions::default() };
        assert_eq!(
            app_error_with(&shop(), &options),
            r#"host.json: the language is "custom" but host.json has no "customHandler" section"#
        );
    }

    #[test]
    fn deploy_option_checks() {
        let mut options = AppOptions::default();
        options.settings.insert("A=B".to_string(), "x".to_string());
        assert_eq!(
            app_error_with(&shop(), &options),
            "deploy settings: setting \"A=B\": names cannot contain '=' (settings become \
             environment variables)"
        );
        let mut options = AppOptions::default();
        options.settings.insert(String::new(), "x".to_string());
        assert_eq!(app_error_with(&shop(), &options), "deploy settings: a setting has an empty name");
        let mut options = AppOptions::default();
        options.settings.insert("A".to_string(), "x\0".to_string());
        assert_eq!(
            app_error_with(&shop(), &options),
            r#"deploy settings: setting "A": values cannot contain NUL"#
        );
        let options = AppOptions { function_timeout: Some(Duration::ZERO), ..AppOptions::default() };
        assert_eq!(
            app_error_with(&shop(), &options),
            "deploy options: function timeout 0ns: must be more than zero"
        );
        let day_and_a_bit = Duration::from_secs(24 * 3600 + 1);
        let options = AppOptions { function_timeout: Some(day_and_a_bit), ..AppOptions::default() };
        assert_eq!(
            app_error_with(&shop(), &options),
            "deploy options: function timeout 86401s: must be at most 1.00:00:00 (24 hours)"
        );
        let scale = ScaleSpec { min_workers: 3, max_workers: 2, ..ScaleSpec::default() };
        let options = AppOptions { scale: Some(scale), ..AppOptions::default() };
        assert_eq!(
            app_error_with(&shop(), &options),
            "deploy options: scale: min_workers (3) is more than max_workers (2)"
        );
        let scale = ScaleSpec { concurrency: 0, ..ScaleSpec::default() };
        let options = AppOptions { scale: Some(scale), ..AppOptions::default() };
        assert_eq!(
            app_error_with(&shop(), &options),
            "deploy options: scale: concurrency must be at least 1"
        );
    }

    #[test]
    fn too_many_settings() {
        let mut options = AppOptions::default();
        for i in 0..MAX_SETTINGS {
            options.settings.insert(format!("S{i}"), String::new());
        }
        assert_eq!(
            app_error_with(&shop(), &options),
            "app settings: too many settings: 10006 (at most 10000)"
        );
    }

    #[test]
    fn disabled_by_setting() {
        let mut options = AppOptions::default();
        options.settings.insert("AzureWebJobs.get_item.Disabled".to_string(), "true".to_string());
        let app = parse_app(&shop(), &options).unwrap();
        assert!(app.functions[1].disabled);
        assert!(!app.functions[0].disabled);
        assert_eq!(app.match_http("GET", "api/items/1"), RouteMatch::NotFound);

        let mut files = shop();
        files.functions[1].function_json =
            GET_ITEM.replace("\"bindings\"", "\"disabled\": true, \"bindings\"");
        let mut options = AppOptions::default();
        options.settings.insert("azurewebjobs.GET_ITEM.disabled".to_string(), "0".to_string());
        assert!(!parse_app(&files, &options).unwrap().functions[1].disabled, "setting wins");

        let mut options = AppOptions::default();
        options.settings.insert("AzureWebJobs.get_item.Disabled".to_string(), "maybe".to_string());
        assert_eq!(
            app_error_with(&shop(), &options),
            r#"app settings: setting "AzureWebJobs.get_item.Disabled": the value is not true, false, 1 or 0"#
        );
    }

    #[test]
    fn timer_schedule_from_a_setting() {
        let timer = r#"{"bindings": [{"type": "timerTrigger", "direction": "in", "name": "tick",
            "schedule": "%TICK%", "runOnStartup": "true"}]}"#;
        let mut options = AppOptions::default();
        options.settings.insert("TICK".to_string(), "0 */5 * * * *".to_string());
        let app = parse_app(&one_function(timer), &options).unwrap();
        assert_eq!(
            app.functions[0].trigger,
            Trigger::Timer {
                binding: "tick".to_string(),
                schedule: "0 */5 * * * *".to_string(),
                run_on_startup: true
            }
        );
        assert_eq!(
            app_error(&one_function(timer)),
            r#"hello/function.json: binding "tick": schedule "%TICK%": the setting "TICK" is not set"#
        );
        options.settings.insert("TICK".to_string(), "*/5 * * * *".to_string());
        assert_eq!(
            app_error_with(&one_function(timer), &options),
            "hello/function.json: binding \"tick\": schedule \"%TICK%\": the value of the setting \
             \"TICK\" has 5 fields; NCRONTAB needs 6 (second minute hour day month day-of-week)"
        );
    }

    // ----- host.json -----------------------------------------------------------------------

    #[test]
    fn host_json_values() {
        let host = parse_host_json(HOST_JSON).unwrap();
        assert_eq!(host.version.as_deref(), Some("2.0"));
        assert_eq!(host.function_timeout, Duration::from_secs(150));
        assert_eq!(host.route_prefix, "api");
        assert_eq!(host.custom_handler, None);
        assert_eq!(parse_host_json("{}").unwrap(), HostJson::default());

        let host = parse_host_json(
            r#"{"version": "2.0", "extensions": {"http": {"routePrefix": "/v1/public/"}},
                "customHandler": {
                  "description": {"defaultExecutablePath": "bin/handler", "arguments": ["-v", "x"],
                                  "workingDirectory": "/tmp"},
                  "enableForwardingHttpRequest": true}}"#,
        )
        .unwrap();
        assert_eq!(host.route_prefix, "v1/public");
        assert_eq!(
            host.custom_handler,
            Some(CustomHandler {
                default_executable_path: "bin/handler".to_string(),
                arguments: vec!["-v".to_string(), "x".to_string()],
                working_directory: "/tmp".to_string(),
                enable_forwarding_http_request: true,
            })
        );
        let empty = r#"{"extensions": {"http": {"routePrefix": ""}}}"#;
        assert_eq!(parse_host_json(empty).unwrap().route_prefix, "");
        let case = r#"{"Extensions": {"HTTP": {"RoutePrefix": "x"}}, "FunctionTimeout": "00:00:10"}"#;
        let host = parse_host_json(case).unwrap();
        assert_eq!(host.route_prefix, "x", "keys are case-insensitive");
        assert_eq!(host.function_timeout, Duration::from_secs(10));
        let bom = "\u{feff}{\"version\": \"2.0\"}";
        assert_eq!(parse_host_json(bom).unwrap().version.as_deref(), Some("2.0"));
    }

    #[test]
    fn host_json_errors() {
        assert_eq!(
            host_error("{\n  \"a\": [\n    }\n}"),
            "host.json: invalid JSON at line 3 column 5: expected value"
        );
        assert_eq!(host_error(""), "host.json: invalid JSON at line 1 column 0: EOF while parsing a value");
        assert_eq!(host_error("[]"), "host.json: must be a JSON object, not an array");
        assert_eq!(host_error(r#"{"version": "1.0"}"#), r#"host.json: "version" must be "2.0", not "1.0""#);
        assert_eq!(host_error(r#"{"version": 2}"#), r#"host.json: "version" must be a string, not a number"#);
        assert_eq!(
            host_error(r#"{"functionTimeout": "-1"}"#),
            "host.json: functionTimeout \"-1\": \"-1\" (no limit) is not accepted here: give a \
             bounded timespan such as \"00:10:00\""
        );
        assert_eq!(
            host_error(r#"{"functionTimeout": "00:00:00"}"#),
            r#"host.json: functionTimeout "00:00:00": must be more than zero"#
        );
        assert_eq!(
            host_error(r#"{"functionTimeout": "1.00:00:01"}"#),
            r#"host.json: functionTimeout "1.00:00:01": must be at most 1.00:00:00 (24 hours)"#
        );
        assert!(parse_host_json(r#"{"functionTimeout": "1.00:00:00"}"#).is_ok());
        assert_eq!(
            host_error(r#"{"functionTimeout": "5 minutes"}"#),
            "host.json: functionTimeout \"5 minutes\": expected a .NET TimeSpan: hh:mm:ss, \
             d.hh:mm:ss or hh:mm:ss.fffffff (e.g. \"00:05:00\")"
        );
        assert_eq!(
            host_error(r#"{"extensions": {"http": {"routePrefix": "a b"}}}"#),
            "host.json: extensions.http.routePrefix \"a b\": segment \"a b\" contains ' ', which \
             is not allowed in a route"
        );
        assert_eq!(
            host_error(r#"{"extensions": {"http": {"routePrefix": "{x}"}}}"#),
            "host.json: extensions.http.routePrefix \"{x}\": segment \"{x}\" mixes text and a \
             parameter, which is not supported"
        );
        assert_eq!(
            host_error(r#"{"extensions": {"http": []}}"#),
            r#"host.json: extensions: "http" must be an object, not an array"#
        );
        assert_eq!(
            host_error(r#"{"customHandler": {}}"#),
            r#"host.json: customHandler: missing "description""#
        );
        assert_eq!(
            host_error(r#"{"customHandler": {"description": {}}}"#),
            r#"host.json: customHandler.description: missing "defaultExecutablePath""#
        );
        assert_eq!(
            host_error(
                r#"{"customHandler": {"description": {"defaultExecutablePath": "x", "arguments": [1]}}}"#
            ),
            "host.json: customHandler.description: arguments: must be an array of strings, but \
             holds a number"
        );
    }

    // ----- local.settings.json -------------------------------------------------------------

    #[test]
    fn local_settings_values() {
        let values = parse_local_settings(LOCAL_SETTINGS).unwrap();
        assert_eq!(values.len(), 6);
        assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "python");
        assert_eq!(values["MAX_ITEMS"], "50");
        assert_eq!(values["FEATURE_ON"], "true");
        assert!(parse_local_settings("{}").unwrap().is_empty());
        let float = parse_local_settings(r#"{"Values": {"F": 1.5, "N": -3}}"#).unwrap();
        assert_eq!((float["F"].as_str(), float["N"].as_str()), ("1.5", "-3"));
    }

    #[test]
    fn local_settings_errors() {
        assert_eq!(
            settings_error(r#"{"Values": {"A": null}}"#),
            r#"local.settings.json: Values."A": null is not a value (write "")"#
        );
        assert_eq!(
            settings_error(r#"{"Values": {"A": {"b": 1}}}"#),
            r#"local.settings.json: Values."A": must be a string, number or boolean, not an object"#
        );
        assert_eq!(
            settings_error(r#"{"Values": {"A": [1]}}"#),
            r#"local.settings.json: Values."A": must be a string, number or boolean, not an array"#
        );
        assert_eq!(
            settings_error(r#"{"Values": []}"#),
            r#"local.settings.json: "Values" must be an object, not an array"#
        );
        assert_eq!(
            settings_error(r#"{"IsEncrypted": true, "Values": {}}"#),
            "local.settings.json: \"IsEncrypted\" is true: decrypt the values first (func \
             settings decrypt)"
        );
        assert_eq!(
            settings_error(r#"{"Values": {"A=B": "x"}}"#),
            "local.settings.json: Values: setting \"A=B\": names cannot contain '=' (settings \
             become environment variables)"
        );
        assert_eq!(
            settings_error(r#"{"Values": {"": "x"}}"#),
            "local.settings.json: Values: a setting has an empty name"
        );
        assert_eq!(
            settings_error(r#"{"Values": {"A\u0000": "x"}}"#),
            r#"local.settings.json: Values: setting "A\0": names cannot contain NUL"#
        );
        assert_eq!(
            settings_error(r#"{"Values": {"A": "x\u0000"}}"#),
            r#"local.settings.json: Values: setting "A": values cannot contain NUL"#
        );
        assert_eq!(settings_error("7"), "local.settings.json: must be a JSON object, not a number");
        let files = AppFiles { local_settings: Some("{".to_string()), ..shop() };
        assert_eq!(
            app_error(&files),
            "local.settings.json: invalid JSON at line 1 column 1: EOF while parsing an object"
        );
    }

    // ----- function.json -------------------------------------------------------------------

    #[test]
    fn binding_errors() {
        let cases = [
            (r#"{"bindings": [{"direction": "in", "name": "req"}]}"#, r#"bindings[0]: missing "type""#),
            (r#"{"bindings": [{"type": "", "name": "req"}]}"#, r#"bindings[0]: "type" must not be empty"#),
            (
                r#"{"bindings": [{"type": 1, "name": "req"}]}"#,
                r#"bindings[0]: "type" must be a string, not a number"#,
            ),
            (r#"{"bindings": ["x"]}"#, "bindings[0]: must be an object, not a string"),
            (r#"{"bindings": [{"type": "httpTrigger"}]}"#, r#"bindings[0]: missing "name""#),
            (
                r#"{"bindings": [{"type": "httpTrigger", "name": ""}]}"#,
                r#"bindings[0]: "name" must not be empty"#,
            ),
            (
                r#"{"bindings": [{"type": "httpTrigger", "name": "r", "direction": "up"}]}"#,
                r#"bindings[0]: "direction" must be "in", "out" or "inout", not "up""#,
            ),
            (
                r#"{"bindings": [{"type": "httpTrigger", "name": "$return", "direction": "in"}]}"#,
                r#"bindings[0]: "$return" is only allowed for an output binding"#,
            ),
            (r#"{"bindings": {}}"#, r#""bindings" must be an array, not an object"#),
            (r#"{}"#, r#"missing "bindings""#),
            (
                r#"{"bindings": []}"#,
                r#"no trigger binding (exactly one binding's type must end in "Trigger")"#,
            ),
            (
                r#"{"bindings": [{"type": "queueTrigger", "name": "q", "direction": "out"}]}"#,
                r#"binding "q" of type "queueTrigger" must have direction "in""#,
            ),
        ];
        for (json, problem) in cases {
            assert_eq!(function_error(json), format!("hello/function.json: {problem}"), "{json}");
        }
    }

    #[test]
    fn binding_errors_next_to_a_trigger() {
        let cases = [
            (
                r#", {"type": "blob", "direction": "out", "name": "outputBlob", "path": "x/{rand-guid}"}"#,
                "binding \"outputBlob\" of type \"blob\" is not supported by Switchboard (only \
                 trigger, http output and $return bindings)",
            ),
            (
                r#", {"type": "queue", "direction": "out", "name": "$return"}"#,
                "binding \"$return\" of type \"queue\" is not supported by Switchboard (only \
                 trigger, http output and $return bindings)",
            ),
            (
                r#", {"type": "http", "direction": "in", "name": "res"}"#,
                r#"binding "res" of type "http" must have direction "out""#,
            ),
            (
                r#", {"type": "timerTrigger", "direction": "in", "name": "t", "schedule": "0 * * * * *"}"#,
                r#"more than one trigger: "req" and "t" (a function has exactly one)"#,
            ),
            (
                r#", {"type": "http", "direction": "out", "name": "REQ"}"#,
                r#"bindings[1]: two bindings are named "REQ" (names are case-insensitive)"#,
            ),
        ];
        for (extra, problem) in cases {
            let json = http_json(extra);
            assert_eq!(function_error(&json), format!("hello/function.json: {problem}"), "{json}");
        }
        let many: String = (0..MAX_BINDINGS)
            .map(|i| format!(r#", {{"type": "http", "direction": "out", "name": "o{i}"}}"#))
            .collect();
        assert_eq!(
            function_error(&http_json(&many)),
            "hello/function.json: too many bindings: 65 (at most 64)"
        );
    }

    #[test]
    fn http_trigger_fields() {
        let json = r#"{"bindings": [{"type": "HttpTrigger", "direction": "IN", "name": "req",
            "route": "/files/{*path}/", "methods": ["get", "Post", "GET"], "authLevel": "admin"},
            {"Type": "HTTP", "Direction": "Out", "Name": "$Return"}]}"#;
        let f = parse_function(APP_DIR, &function("hello", json), "python").unwrap();
        let Trigger::Http(http) = &f.trigger else { panic!("not http") };
        assert_eq!(http.route.raw, "files/{*path}");
        assert_eq!(http.methods, ["GET", "POST"]);
        assert_eq!(http.auth_level, "admin");
        assert_eq!(f.http_output(), Some("$return"), "known kinds are spelled canonically");
        assert_eq!(f.bindings[0].kind, "httpTrigger");
        assert!(f.bindings[1].raw.contains(r#""Type":"HTTP""#), "raw is kept as written");
        let root = parse_function(
            APP_DIR,
            &function("hello", &http_json("").replace(r#""name": "req""#, r#""name": "req", "route": "/""#)),
            "python",
        )
        .unwrap();
        let Trigger::Http(http) = &root.trigger else { panic!("not http") };
        assert!(http.route.segments.is_empty(), "\"/\" is the prefix root");

        let json = http_json("").replace(r#""name": "req""#, r#""name": "req", "methods": ["FETCH"]"#);
        assert_eq!(
            function_error(&json),
            "hello/function.json: binding \"req\": method \"FETCH\" is not one of GET, POST, PUT, \
             DELETE, PATCH, HEAD, OPTIONS, TRACE"
        );
        let json = http_json("").replace(r#""name": "req""#, r#""name": "req", "methods": "get""#);
        assert_eq!(
            function_error(&json),
            "hello/function.json: binding \"req\": methods: must be an array of strings, not a \
             string"
        );
        let json = http_json("").replace(r#""name": "req""#, r#""name": "req", "route": "a//b""#);
        assert_eq!(
            function_error(&json),
            r#"hello/function.json: binding "req": route "a//b": empty segment ("//")"#
        );
        let long = "a".repeat(MAX_ROUTE_LEN + 1);
        let json = http_json("").replace(r#""name": "req""#, &format!(r#""name": "req", "route": "{long}""#));
        assert!(function_error(&json).ends_with(": too long: 1025 characters (at most 1024)"));
    }

    #[test]
    fn timer_and_other_triggers() {
        let json = r#"{"bindings": [{"type": "timerTrigger", "direction": "in", "name": "t",
            "schedule": "0 */5 * * * *"}]}"#;
        let f = parse_function(APP_DIR, &function("hello", json), "python").unwrap();
        assert_eq!(
            f.trigger,
            Trigger::Timer {
                binding: "t".to_string(),
                schedule: "0 */5 * * * *".to_string(),
                run_on_startup: false
            }
        );
        assert_eq!(f.http_output(), None);
        let json = r#"{"bindings": [{"type": "queueTrigger", "name": "msg", "queueName": "q"}]}"#;
        let f = parse_function(APP_DIR, &function("hello", json), "python").unwrap();
        assert_eq!(
            f.trigger,
            Trigger::Other { binding: "msg".to_string(), kind: "queueTrigger".to_string() }
        );
        assert_eq!(f.bindings[0].direction, Direction::In, "direction defaults to in");

        let no_schedule = r#"{"bindings": [{"type": "timerTrigger", "direction": "in", "name": "t"}]}"#;
        assert_eq!(function_error(no_schedule), r#"hello/function.json: binding "t": missing "schedule""#);
        let five = r#"{"bindings": [{"type": "timerTrigger", "name": "t", "schedule": "* * * * *"}]}"#;
        assert_eq!(
            function_error(five),
            "hello/function.json: binding \"t\": schedule \"* * * * *\": has 5 fields; NCRONTAB \
             needs 6 (second minute hour day month day-of-week)"
        );
        let startup = r#"{"bindings": [{"type": "timerTrigger", "name": "t", "schedule": "0 * * * * *", "runOnStartup": 1}]}"#;
        assert_eq!(
            function_error(startup),
            r#"hello/function.json: binding "t": "runOnStartup" must be true or false, not 1"#
        );
    }

    #[test]
    fn top_level_fields() {
        let json = http_json("").replacen('{', r#"{"disabled": "True", "entryPoint": "run", "#, 1);
        let f = parse_function(APP_DIR, &function("hello", &json), "python").unwrap();
        assert!(f.disabled);
        assert_eq!(f.entry_point, "run");
        let json = http_json("").replacen('{', r#"{"disabled": "yes", "#, 1);
        assert_eq!(
            function_error(&json),
            r#"hello/function.json: "disabled" must be true or false, not "yes""#
        );
        let json = http_json("").replacen('{', r#"{"entryPoint": ["x"], "#, 1);
        assert_eq!(
            function_error(&json),
            r#"hello/function.json: "entryPoint" must be a string, not an array"#
        );
        assert_eq!(function_error("[1]"), "hello/function.json: must be a JSON object, not an array");
        assert!(
            function_error("{\"bindings\": [")
                .starts_with("hello/function.json: invalid JSON at line 1 column 14: ")
        );
    }

    #[test]
    fn script_file_resolution() {
        let with_script =
            |script: &str| http_json("").replacen('{', &format!(r#"{{"scriptFile": "{script}", "#), 1);
        let resolve = |script: &str| {
            let mut files = function("hello", &with_script(script));
            files.files.push("lib/x.py".to_string());
            parse_function(APP_DIR, &files, "python").map(|f| f.script_file)
        };
        assert_eq!(resolve("lib/x.py").unwrap(), "/srv/apps/shop/hello/lib/x.py");
        assert_eq!(resolve("./main.py").unwrap(), "/srv/apps/shop/hello/main.py");
        assert_eq!(resolve("../hello/main.py").unwrap(), "/srv/apps/shop/hello/main.py");
        assert_eq!(resolve("..\\\\shared\\\\x.py").unwrap(), "/srv/apps/shop/shared/x.py");
        assert_eq!(resolve("../app.py").unwrap(), "/srv/apps/shop/app.py");
        let cases = [
            ("main2.py", r#"scriptFile "main2.py" does not exist in hello/"#),
            ("../hello/nope.py", r#"scriptFile "../hello/nope.py" does not exist in hello/"#),
            ("../../etc/passwd", r#"scriptFile "../../etc/passwd" points outside the app folder"#),
            ("../../shop/x.py", r#"scriptFile "../../shop/x.py" points outside the app folder"#),
            ("/etc/passwd", r#"scriptFile "/etc/passwd" must be a path relative to the function folder"#),
            ("C:/x.py", r#"scriptFile "C:/x.py" must be a path relative to the function folder"#),
            ("..", r#"scriptFile ".." names a folder, not a file"#),
            (".", r#"scriptFile "." names a folder, not a file"#),
            ("x\\u0000.py", r#"scriptFile "x\0.py" contains NUL"#),
        ];
        for (script, problem) in cases {
            assert_eq!(
                function_error(&with_script(script)),
                format!("hello/function.json: {problem}"),
                "{script}"
            );
        }
        let mut files = function("hello", &with_script("main.py"));
        files.files.clear();
        assert_eq!(
            parse_function(APP_DIR, &files, "python").unwrap_err().to_string(),
            r#"hello/function.json: scriptFile "main.py" does not exist in hello/"#
        );
        files.function_json = http_json("");
        assert_eq!(
            parse_function(APP_DIR, &files, "python").unwrap_err().to_string(),
            r#"hello/function.json: scriptFile "__init__.py" does not exist in hello/"#
        );
    }

    #[test]
    fn retry_policies() {
        let with_retry = |retry: &str| http_json("").replacen('{', &format!(r#"{{"retry": {retry}, "#), 1);
        let policy = |retry: &str| {
            parse_function(APP_DIR, &function("hello", &with_retry(retry)), "python").unwrap().retry.unwrap()
        };
        assert_eq!(
            policy(r#"{"strategy": "fixedDelay", "maxRetryCount": 3, "delayInterval": "00:00:05"}"#),
            RetryPolicy { max_retries: 3, strategy: RetryStrategy::Fixed(Duration::from_secs(5)) }
        );
        assert_eq!(
            policy(
                r#"{"strategy": "ExponentialBackoff", "maxRetryCount": -1,
                       "minimumInterval": "00:00:01.5", "maximumInterval": "00:15:00"}"#
            ),
            RetryPolicy {
                max_retries: MAX_RETRY_COUNT,
                strategy: RetryStrategy::Exponential {
                    min: Duration::from_millis(1500),
                    max: Duration::from_secs(900)
                }
            }
        );
        assert_eq!(
            policy(r#"{"strategy": "fixedDelay", "maxRetryCount": "1000", "delayInterval": "00:00:00"}"#)
                .max_retries,
            MAX_RETRY_COUNT
        );
        let cases = [
            (r#"[]"#, "retry: must be an object, not an array"),
            (r#"{"maxRetryCount": 1}"#, r#"retry: missing "strategy""#),
            (
                r#"{"strategy": "linear", "maxRetryCount": 1}"#,
                r#"retry: "strategy" must be "fixedDelay" or "exponentialBackoff", not "linear""#,
            ),
            (r#"{"strategy": "fixedDelay"}"#, r#"retry: missing "maxRetryCount""#),
            (
                r#"{"strategy": "fixedDelay", "maxRetryCount": -2}"#,
                r#"retry: "maxRetryCount" must be an integer >= -1, not -2"#,
            ),
            (
                r#"{"strategy": "fixedDelay", "maxRetryCount": 1.5}"#,
                r#"retry: "maxRetryCount" must be an integer >= -1, not 1.5"#,
            ),
            (
                r#"{"strategy": "fixedDelay", "maxRetryCount": 1}"#,
                r#"retry: missing "delayInterval" (required by strategy "fixedDelay")"#,
            ),
            (
                r#"{"strategy": "exponentialBackoff", "maxRetryCount": 1, "minimumInterval": "00:00:01"}"#,
                r#"retry: missing "maximumInterval" (required by strategy "exponentialBackoff")"#,
            ),
            (
                r#"{"strategy": "exponentialBackoff", "maxRetryCount": 1,
                    "minimumInterval": "00:01:00", "maximumInterval": "00:00:10"}"#,
                "retry: minimumInterval (60s) is more than maximumInterval (10s)",
            ),
            (
                r#"{"strategy": "fixedDelay", "maxRetryCount": 1, "delayInterval": "10"}"#,
                "retry: delayInterval \"10\": expected a .NET TimeSpan: hh:mm:ss, d.hh:mm:ss or \
                 hh:mm:ss.fffffff (e.g. \"00:05:00\")",
            ),
        ];
        for (retry, problem) in cases {
            assert_eq!(
                function_error(&with_retry(retry)),
                format!("hello/function.json: {problem}"),
                "{retry}"
            );
        }
    }

    // ----- timespans and routes ------------------------------------------------------------

    #[test]
    fn timespans() {
        let ok = [
            ("00:05:00", Duration::from_secs(300)),
            ("0:5:0", Duration::from_secs(300)),
            ("01:30", Duration::from_secs(5400)),
            (" 23:59:59 ", Duration::from_secs(86_399)),
            ("1.00:00:00", Duration::from_secs(86_400)),
            ("2.03:04:05", Duration::from_secs(2 * 86_400 + 3 * 3600 + 4 * 60 + 5)),
            ("00:00:00.5", Duration::from_millis(500)),
            ("00:00:01.0000001", Duration::new(1, 100)),
            ("00:00:00", Duration::ZERO),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_timespan(text).unwrap(), expected, "{text}");
        }
        let bad = [
            ("-1", "\"-1\" (no limit) is not accepted here: give a bounded timespan such as \"00:10:00\""),
            ("-00:00:01", "negative timespans are not allowed"),
            ("24:00:00", "24 is out of range (at most 23; write a day as 1.00:00:00)"),
            ("00:60:00", "60 is out of range (at most 59; write a day as 1.00:00:00)"),
            ("00:00:00.12345678", "fraction \"12345678\" must be 1 to 7 digits"),
            ("00:00:00.", "fraction \"\" must be 1 to 7 digits"),
            ("a:00", "\"a\" is not a number (expected hh:mm:ss, d.hh:mm:ss or hh:mm:ss.fff)"),
            (
                "1:2:3:4",
                "expected a .NET TimeSpan: hh:mm:ss, d.hh:mm:ss or hh:mm:ss.fffffff (e.g. \"00:05:00\")",
            ),
            ("", "expected a .NET TimeSpan: hh:mm:ss, d.hh:mm:ss or hh:mm:ss.fffffff (e.g. \"00:05:00\")"),
            (
                "99999999999.00:00:00",
                "\"99999999999\" is not a number (expected hh:mm:ss, d.hh:mm:ss or hh:mm:ss.fff)",
            ),
        ];
        for (text, problem) in bad {
            assert_eq!(
                parse_timespan(text).unwrap_err().to_string(),
                format!("timespan {}: {problem}", quoted(text)),
                "{text}"
            );
        }
    }

    #[test]
    fn route_templates() {
        let t = parse_route("/a/{b:int:min(1)}/{c?}/").unwrap();
        assert_eq!(t.raw, "a/{b:int:min(1)}/{c?}");
        assert_eq!(
            t.segments,
            [
                RouteSegment::Literal("a".to_string()),
                RouteSegment::Param {
                    name: "b".to_string(),
                    optional: false,
                    constraint: Some("int:min(1)".to_string())
                },
                RouteSegment::Param { name: "c".to_string(), optional: true, constraint: None },
            ]
        );
        let t = parse_route("files/{**path}").unwrap();
        assert_eq!(t.segments[1], RouteSegment::CatchAll("path".to_string()));
        assert!(parse_route("").unwrap().segments.is_empty());
        assert!(parse_route("caf\u{e9}/v1.2/a-b_c~d").is_ok());

        let bad = [
            ("a//b", "empty segment (\"//\")"),
            ("{a?}/b", "optional parameter \"a\" must be the last segment"),
            ("{*a}/b", "catch-all parameter \"a\" must be the last segment"),
            ("{a}/{A}", "parameter \"A\" appears twice"),
            ("x{id}", "segment \"x{id}\" mixes text and a parameter, which is not supported"),
            ("{a}{b}", "segment \"{a}{b}\": '{' and '}' escapes are not supported"),
            ("{id=1}", "segment \"{id=1}\": default values are not supported"),
            ("{}", "segment \"{}\": parameter without a name"),
            ("{a-b}", "segment \"{a-b}\": parameter names may hold only letters, digits and '_'"),
            ("{a:}", "segment \"{a:}\": empty constraint"),
            ("{*a:int}", "segment \"{*a:int}\": constraints on a catch-all are not supported"),
            ("a?b", "segment \"a?b\" contains '?', which is not allowed in a route"),
            ("a%20b", "segment \"a%20b\" contains '%', which is not allowed in a route"),
            ("a/../b", "segment \"..\" is not allowed"),
        ];
        for (template, problem) in bad {
            assert_eq!(
                parse_route(template).unwrap_err().to_string(),
                format!("route {}: {problem}", quoted(template)),
                "{template}"
            );
        }
    }

    #[test]
    fn quoted_cuts_long_text() {
        let long = "x".repeat(500);
        assert_eq!(quoted(&long), format!("\"{}\"…", "x".repeat(100)));
        assert_eq!(quoted("a\"b"), r#""a\"b""#);
    }

    // ----- no panics -----------------------------------------------------------------------

    /// JSON values whose keys come from the vocabulary this module reads, so that random
    /// inputs reach deep into the parser.
    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("type"),
            Just("direction"),
            Just("name"),
            Just("route"),
            Just("methods"),
            Just("bindings"),
            Just("scriptFile"),
            Just("retry"),
            Just("strategy"),
            Just("maxRetryCount"),
            Just("delayInterval"),
            Just("minimumInterval"),
            Just("maximumInterval"),
            Just("schedule"),
            Just("disabled"),
            Just("Values"),
            Just("version"),
            Just("functionTimeout"),
            Just("extensions"),
            Just("http"),
            Just("routePrefix"),
            Just("customHandler"),
            Just("description"),
            Just("defaultExecutablePath"),
            Just("arguments"),
            Just("IsEncrypted"),
        ]
        .prop_map(str::to_string);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop_oneof![
                Just("httpTrigger"),
                Just("timerTrigger"),
                Just("http"),
                Just("in"),
                Just("out"),
                Just("$return"),
                Just("2.0"),
                Just("00:00:05"),
                Just("-1"),
                Just("fixedDelay"),
                Just("exponentialBackoff"),
                Just("{id:int}/{*rest}"),
                Just("0 * * * * *"),
                Just("__init__.py"),
                Just("../x.py"),
                Just("%S%"),
            ]
            .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parse_app_never_panics_on_strings(
            directory in "\\PC{0,20}",
            host in proptest::option::of("\\PC{0,40}"),
            settings in proptest::option::of("\\PC{0,40}"),
            name in "\\PC{0,10}",
            function_json in "\\PC{0,60}",
            file in "\\PC{0,10}",
        ) {
            let files = AppFiles {
                directory,
                host_json: host,
                local_settings: settings,
                functions: vec![FunctionFiles { name, function_json, files: vec![file] }],
            };
            let _ = parse_app(&files, &AppOptions::default());
        }

        #[test]
        fn parse_app_never_panics_on_json(
            host in json_value(),
            settings in json_value(),
            function_json in json_value(),
            language in prop_oneof![Just(None), Just(Some("python")), Just(Some("custom"))],
        ) {
            let files = AppFiles {
                directory: APP_DIR.to_string(),
                host_json: Some(host.to_string()),
                local_settings: Some(settings.to_string()),
                functions: vec![function("f", &function_json.to_string())],
            };
            let options = AppOptions {
                language: language.map(str::to_string),
                ..AppOptions::default()
            };
            if let Ok(app) = parse_app(&files, &options) {
                let _ = app.match_http("GET", "api/f/1/2");
            }
        }

        #[test]
        fn parse_route_and_timespan_never_panic(text in "\\PC{0,40}") {
            let _ = parse_route(&text);
            let _ = parse_timespan(&text);
            let _ = parse_app_name(&text);
        }
    }
}
