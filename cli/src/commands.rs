//! The admin commands: each calls the admin API and prints a table (or, with `--json`, the
//! API's JSON).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::client::{Client, Error, SseParser};
use crate::table::{Table, age, or_dash};
use crate::{AppCommand, Command, DeployArgs, Exit, Remote, ScaleArgs, WorkersCommand};

type Result = std::result::Result<Exit, Error>;

/// Runs one admin command on a small single-threaded runtime.
pub fn run(remote: Remote, command: Command) -> Exit {
    let token = crate::client::token(remote.token, remote.token_file);
    let client = match Client::new(&remote.admin, token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return Exit::Usage;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let out = Out { json: remote.json };
    let result = runtime.block_on(async {
        match command {
            Command::App(app) => match app {
                AppCommand::Deploy(args) => deploy(&client, &out, args, false).await,
                AppCommand::Update(args) => deploy(&client, &out, args, true).await,
                AppCommand::List => list_apps(&client, &out).await,
                AppCommand::Show { name } => show_app(&client, &out, &name).await,
                AppCommand::Remove { name } => remove_app(&client, &out, &name).await,
                AppCommand::Scale { name, scale } => scale_app(&client, &out, &name, &scale).await,
                AppCommand::Drain { name } => drain_app(&client, &out, &name).await,
            },
            Command::Workers { action: None } => workers(&client, &out).await,
            Command::Workers { action: Some(WorkersCommand::Drain { id }) } => {
                drain_worker(&client, &out, &id).await
            }
            Command::Pools => pools(&client, &out).await,
            Command::Invoke { app, function, data, traceparent } => {
                invoke(&client, &out, &app, &function, data.as_deref(), traceparent.as_deref()).await
            }
            Command::Logs { app, follow, tail, system } => {
                logs(&client, &out, &app, follow, tail, system).await
            }
            Command::Serve { .. } | Command::Worker(_) => {
                unreachable!("serve and worker are handled by main")
            }
        }
    });
    match result {
        Ok(exit) => exit,
        Err(e) => {
            if out.json
                && let Error::Api { body: Some(body), .. } = &e
            {
                out.print_json(body);
            }
            eprintln!("switchboard: {e}");
            e.exit()
        }
    }
}

/// How results are printed.
struct Out {
    json: bool,
}

impl Out {
    fn print_json(&self, value: &Value) {
        println!("{}", serde_json::to_string_pretty(value).expect("JSON values serialize"));
    }

    /// Prints `value` as JSON with `--json`, else the text `render` makes of it.
    fn show(&self, value: &Value, render: impl FnOnce(&Value) -> String) -> Exit {
        if self.json {
            self.print_json(value);
        } else {
            print!("{}", render(value));
        }
        Exit::Ok
    }
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn scale_body(scale: &ScaleArgs) -> Option<Value> {
    let mut body = serde_json::Map::new();
    for (key, value) in [
        ("min_workers", scale.min_workers),
        ("max_workers", scale.max_workers),
        ("concurrency", scale.concurrency),
        ("queue_limit", scale.queue_limit),
    ] {
        if let Some(v) = value {
            body.insert(key.into(), v.into());
        }
    }
    (!body.is_empty()).then_some(Value::Object(body))
}

async fn deploy(client: &Client, out: &Out, args: DeployArgs, update: bool) -> Result {
    // The runtime reads the folder: send it an absolute path.
    let dir = std::fs::canonicalize(&args.dir)
        .or_else(|_| std::path::absolute(&args.dir))
        .unwrap_or_else(|_| args.dir.clone());
    let settings: BTreeMap<String, String> = args.settings.into_iter().collect();
    let mut body = json!({ "path": dir, "settings": settings });
    if let Some(scale) = scale_body(&args.scale) {
        body["scale"] = scale;
    }
    let reply = if update {
        let Some(name) = args.name.or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        else {
            eprintln!("switchboard: cannot tell the app's name from {}: pass --name", dir.display());
            return Ok(Exit::Usage);
        };
        client.json(Method::PUT, &format!("/v1/apps/{}", seg(&name)), Some(&body)).await?
    } else {
        if let Some(name) = args.name {
            body["name"] = name.into();
        }
        client.json(Method::POST, "/v1/apps", Some(&body)).await?
    };
    Ok(out.show(&reply, |r| {
        let version = r["version"].as_u64().unwrap_or(0);
        let verb = if version == 1 { "deployed" } else { "updated" };
        format!("{verb} {} (version {version}) from {}\n", text(&r["name"]), dir.display())
    }))
}

async fn list_apps(client: &Client, out: &Out) -> Result {
    let apps = client.get("/v1/apps").await?;
    Ok(out.show(&apps, |apps| {
        let mut t = Table::new(&[
            "NAME",
            "VERSION",
            "LANGUAGE",
            "FUNCTIONS",
            "READY",
            "WORKERS",
            "QUEUED",
            "IN-FLIGHT",
            "STATUS",
        ]);
        for a in apps.as_array().into_iter().flatten() {
            t.row(vec![
                text(&a["name"]),
                text(&a["version"]),
                text(&a["language"]),
                a["functions"].as_array().map_or(0, Vec::len).to_string(),
                text(&a["ready"]),
                text(&a["workers"]),
                text(&a["queued"]),
                text(&a["in_flight"]),
                status(a),
            ]);
        }
        t.render()
    }))
}

fn status(app: &Value) -> String {
    if app["failing"] == true { format!("failing: {}", text(&app["last_error"])) } else { "ok".into() }
}

async fn show_app(client: &Client, out: &Out, name: &str) -> Result {
    let app = client.get(&format!("/v1/apps/{}", seg(name))).await?;
    Ok(out.show(&app, |a| {
        let s = &a["scale"];
        let settings: Vec<String> = a["settings"].as_array().into_iter().flatten().map(text).collect();
        let mut text_out = format!(
            "name:          {}\nversion:       {}\nlanguage:      {}\ndirectory:     {}\nroute prefix:  {}\n\
             scale:         min_workers {}, max_workers {}, concurrency {}, queue_limit {}\n\
             workers:       {} ({} ready, {} specializing)\ncalls:         {} queued, {} in flight\n\
             settings:      {}\nstatus:        {}\n\nfunctions:\n",
            text(&a["name"]),
            text(&a["version"]),
            text(&a["language"]),
            text(&a["directory"]),
            text(&a["route_prefix"]),
            text(&s["min_workers"]),
            text(&s["max_workers"]),
            text(&s["concurrency"]),
            text(&s["queue_limit"]),
            text(&a["workers"]),
            text(&a["ready"]),
            text(&a["specializing"]),
            text(&a["queued"]),
            text(&a["in_flight"]),
            if settings.is_empty() { "-".to_owned() } else { settings.join(", ") },
            status(a),
        );
        let mut t = Table::new(&["NAME", "TRIGGER", "ROUTE", "METHODS", "DISABLED"]);
        for f in a["functions"].as_array().into_iter().flatten() {
            let trigger = &f["trigger"];
            let methods: Vec<String> =
                trigger["methods"].as_array().into_iter().flatten().map(text).collect();
            t.row(vec![
                text(&f["name"]),
                text(&trigger["type"]),
                or_dash(trigger["route"].as_str()),
                if methods.is_empty() { "-".into() } else { methods.join(",") },
                text(&f["disabled"]),
            ]);
        }
        text_out.push_str(&t.render());
        text_out
    }))
}

async fn remove_app(client: &Client, out: &Out, name: &str) -> Result {
    let reply = client.json(Method::DELETE, &format!("/v1/apps/{}", seg(name)), None).await?;
    Ok(out.show(&reply, |_| {
        format!("removed {name}: its routes are gone; its workers finish their calls and stop\n")
    }))
}

async fn scale_app(client: &Client, out: &Out, name: &str, scale: &ScaleArgs) -> Result {
    let Some(body) = scale_body(scale) else {
        eprintln!(
            "switchboard: nothing to change: give --min-workers, --max-workers, --concurrency or --queue-limit"
        );
        return Ok(Exit::Usage);
    };
    let reply = client.json(Method::PUT, &format!("/v1/apps/{}/scale", seg(name)), Some(&body)).await?;
    Ok(out.show(&reply, |s| {
        format!(
            "{name}: min_workers {}, max_workers {}, concurrency {}, queue_limit {}\n",
            text(&s["min_workers"]),
            text(&s["max_workers"]),
            text(&s["concurrency"]),
            text(&s["queue_limit"])
        )
    }))
}

async fn drain_app(client: &Client, out: &Out, name: &str) -> Result {
    let reply = client.json(Method::POST, &format!("/v1/apps/{}/drain", seg(name)), None).await?;
    Ok(out.show(&reply, |r| {
        let ids: Vec<String> = r["draining"].as_array().into_iter().flatten().map(text).collect();
        if ids.is_empty() {
            format!("{name} has no workers to drain\n")
        } else {
            format!("draining {} worker(s) of {name}: {}\n", ids.len(), ids.join(", "))
        }
    }))
}

async fn workers(client: &Client, out: &Out) -> Result {
    let workers = client.get("/v1/workers").await?;
    Ok(out.show(&workers, |workers| {
        let mut t = Table::new(&["ID", "STATE", "APP", "LANGUAGE", "IN-FLIGHT", "LAST-SEEN", "PID", "PEER"]);
        for w in workers.as_array().into_iter().flatten() {
            t.row(vec![
                text(&w["id"]),
                text(&w["state"]),
                text(&w["app"]),
                text(&w["language"]),
                format!("{}/{}", text(&w["in_flight"]), text(&w["capacity"])),
                age(w["last_seen_ms"].as_u64().unwrap_or(0)),
                text(&w["pid"]),
                text(&w["peer"]),
            ]);
        }
        t.render()
    }))
}

async fn drain_worker(client: &Client, out: &Out, id: &str) -> Result {
    let reply = client.json(Method::POST, &format!("/v1/workers/{}/drain", seg(id)), None).await?;
    Ok(out.show(&reply, |_| format!("draining worker {id}\n")))
}

async fn pools(client: &Client, out: &Out) -> Result {
    let pools = client.get("/v1/pools").await?;
    Ok(out.show(&pools, |pools| {
        let mut t = Table::new(&["POOL", "IDLE", "MIN-IDLE", "MEMBERS", "MAX", "PROVISIONING", "FAILURES"]);
        for p in pools.as_array().into_iter().flatten() {
            t.row(vec![
                text(&p["pool"]),
                text(&p["idle"]),
                text(&p["min_idle"]),
                text(&p["members"]),
                text(&p["max"]),
                text(&p["provisioning"]),
                text(&p["failures"]),
            ]);
        }
        t.render()
    }))
}

/// The input of `invoke --data`.
fn read_data(data: Option<&str>) -> std::io::Result<Bytes> {
    match data {
        None => Ok(Bytes::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            Ok(Bytes::from(buf))
        }
        Some(s) => match s.strip_prefix('@') {
            Some(path) => std::fs::read(Path::new(path)).map(Bytes::from),
            None => Ok(Bytes::copy_from_slice(s.as_bytes())),
        },
    }
}

async fn invoke(
    client: &Client,
    out: &Out,
    app: &str,
    function: &str,
    data: Option<&str>,
    traceparent: Option<&str>,
) -> Result {
    let body = match read_data(data) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("switchboard: cannot read --data {}: {e}", data.unwrap_or_default());
            return Ok(Exit::Usage);
        }
    };
    let headers: Vec<(&str, &str)> = traceparent.map(|tp| ("traceparent", tp)).into_iter().collect();
    let path = format!("/v1/apps/{}/functions/{}/invoke", seg(app), seg(function));
    let reply = client.call(Method::POST, &path, Some(body), &headers).await?;
    if out.json {
        out.print_json(&reply);
    }
    if reply["outcome"] != "success" {
        eprintln!(
            "switchboard: {app}/{function}: {}: {}",
            text(&reply["outcome"]),
            reply["error"].as_str().unwrap_or("no details")
        );
        return Ok(Exit::Failed);
    }
    if !out.json {
        let body = match &reply["body"] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        println!("{body}");
        if let Some(status) = reply["status"].as_str().and_then(|s| s.parse::<u16>().ok())
            && !(200..300).contains(&status)
        {
            eprintln!("switchboard: the function answered HTTP {status}");
        }
    }
    Ok(Exit::Ok)
}

/// One log line as text: time, level, function, invocation, worker, message.
fn log_text(line: &Value) -> String {
    let level = match line["level"].as_str().unwrap_or("") {
        "trace" => "TRACE",
        "debug" => "DEBUG",
        "information" => "INFO",
        "warning" => "WARN",
        "error" => "ERROR",
        "critical" => "CRIT",
        _ => "-",
    };
    format!(
        "{} {level:<5} {} {} {}  {}",
        text(&line["time"]),
        text(&line["function"]),
        text(&line["invocation"]),
        text(&line["worker"]),
        text(&line["message"]),
    )
}

async fn logs(
    client: &Client,
    out: &Out,
    app: &str,
    follow: bool,
    tail: Option<usize>,
    system: bool,
) -> Result {
    let mut query = Vec::new();
    if let Some(n) = tail {
        query.push(format!("tail={n}"));
    }
    if system {
        query.push("system=true".into());
    }
    if !follow {
        let path = format!("/v1/apps/{}/logs?{}", seg(app), query.join("&"));
        let lines = client.get(&path).await?;
        return Ok(out.show(&lines, |lines| {
            lines.as_array().into_iter().flatten().map(|l| log_text(l) + "\n").collect()
        }));
    }
    query.push("follow=true".into());
    let mut body = client.stream(&format!("/v1/apps/{}/logs?{}", seg(app), query.join("&"))).await?;
    let mut parser = SseParser::default();
    loop {
        let frame = match body.frame().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(Error::Unreachable(format!("the log stream broke: {e}"))),
            None => return Err(Error::Unreachable("the runtime closed the log stream".into())),
        };
        let Ok(data) = frame.into_data() else { continue };
        for event in parser.push(&data) {
            let value: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            match event.event.as_str() {
                "log" if out.json => println!("{}", event.data),
                "log" => println!("{}", log_text(&value)),
                "lagged" => eprintln!(
                    "switchboard: this reader fell behind; {} line(s) were dropped",
                    text(&value["skipped"])
                ),
                "end" => {
                    eprintln!("switchboard: log stream ended: {}", text(&value["reason"]));
                    return Ok(Exit::Ok);
                }
                _ => {}
            }
        }
    }
}
