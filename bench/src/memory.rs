//! Memory: the runtime's resident set with no apps and no workers, with 1,000 connected
//! placeholder workers (lightweight echo workers in this process), and with 100 and 1,000 apps
//! deployed; the per-worker and per-app costs follow. Then density: apps per 7 GB node from the
//! measured runtime per-app cost and the real Python worker's measured RSS.

use std::path::Path;
use std::time::Duration;

use http::Method;
use serde_json::json;
use switchboard_tests::{ServeProcess, examples, http_get};

use crate::report::Section;
use crate::routing::{echo_app, echo_config};
use crate::stats::{Summary, fmt};

const TOKEN: &str = "bench";

/// RSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn deploy_many(rt: &ServeProcess, app: &Path, from: usize, to: usize) {
    for i in from..to {
        let body = json!({"path": app, "name": format!("app{i}"),
            "scale": {"min_workers": 0, "max_workers": 1, "concurrency": 16, "queue_limit": 16}});
        let r = rt.admin_send(Method::POST, "/v1/apps", body).await;
        assert!(r.status.is_success(), "deploy app{i}: {}", r.text());
    }
}

/// One measurement round: (base, +workers, +100 apps, +1000 apps) in KiB.
async fn round(binary: &Path, dir: &Path, workers: usize) -> [f64; 4] {
    let rt = ServeProcess::start(binary, dir, &echo_config(dir, "tokio", (workers + 16) as u32), TOKEN).await;
    let pid = rt.child.id().expect("running");
    let _ = rt.admin_get("/v1/apps").await; // every listener has served once
    let base = rss_kib(pid) as f64;
    for chunk in 0..workers.div_ceil(100) {
        let channel = crate::echo::channel(&rt.workers).await;
        for i in chunk * 100..((chunk + 1) * 100).min(workers) {
            tokio::spawn(crate::echo::run(channel.clone(), format!("w{i}"), Some(TOKEN.into()), 16));
        }
    }
    rt.wait_workers("placeholder", workers, Duration::from_secs(120)).await;
    let with_workers = rss_kib(pid) as f64;
    let app = echo_app(dir);
    deploy_many(&rt, &app, 0, 100).await;
    let apps_100 = rss_kib(pid) as f64;
    deploy_many(&rt, &app, 100, 1000).await;
    let apps_1000 = rss_kib(pid) as f64;
    rt.stop().await;
    [base, with_workers, apps_100, apps_1000]
}

/// RSS of a real Python worker (placeholder and specialized), in KiB.
async fn python_worker_rss(binary: &Path, dir: &Path) -> (f64, f64) {
    let config = format!(
        "state_dir = \"{}\"\n[listen]\nfront_door = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nworkers = \"127.0.0.1:0\"\n[admin]\ntoken = \"{TOKEN}\"\n[[pool]]\nlanguage = \"python\"\nmin_idle = 1\nmax = 4\n[[app]]\npath = \"{}\"\nmin_workers = 1\n",
        dir.join("state").display(),
        examples().join("hello").display()
    );
    let rt = ServeProcess::start(binary, &dir.join("py"), &config, TOKEN).await;
    let workers = rt.wait_workers("ready", 1, Duration::from_secs(60)).await;
    let workers = if workers.iter().any(|w| w["state"] == "placeholder") {
        workers
    } else {
        rt.wait_workers("placeholder", 1, Duration::from_secs(60)).await
    };
    for _ in 0..20 {
        let _ = http_get(&format!("{}/hello/api/hello", rt.front_door), None).await;
    }
    let rss_of = |state: &str| {
        workers
            .iter()
            .find(|w| w["state"] == state)
            .and_then(|w| w["pid"].as_u64())
            .map(|pid| rss_kib(pid as u32) as f64)
            .unwrap_or(f64::NAN)
    };
    let out = (rss_of("placeholder"), rss_of("ready"));
    rt.stop().await;
    out
}

/// Runs the memory and density benchmarks and publishes their sections.
pub async fn bench(binary: &Path, quick: bool) {
    let (reps, workers) = if quick { (1, 100) } else { (5, 1000) };
    let dir = std::env::temp_dir().join(format!("switchboard-bench-mem-{}", std::process::id()));
    let mut rounds = Vec::new();
    for r in 0..reps {
        rounds.push(round(binary, &dir.join(format!("r{r}")), workers).await);
    }
    let col = |i: usize| rounds.iter().map(|r| r[i] / 1024.0).collect::<Vec<f64>>();
    let per_worker: Vec<f64> = rounds.iter().map(|r| (r[1] - r[0]) / workers as f64).collect();
    let per_app: Vec<f64> = rounds.iter().map(|r| (r[3] - r[2]) / 900.0).collect();
    let (base, pw, pa) = (Summary::of(&col(0)), Summary::of(&per_worker), Summary::of(&per_app));
    let mut section = Section {
        name: "memory",
        title: "Memory: runtime RSS by apps and connected workers",
        command: "cargo run --release -p switchboard-bench -- memory".into(),
        intro: format!(
            "`switchboard serve` (release, tokio shell) as its own process; {workers} lightweight \
             echo workers in the bench process join one external pool; then 100 and 1,000 apps \
             (one HTTP function each) are deployed through the admin API. RSS from /proc. Per \
             worker = (RSS with workers − base) / {workers}; per app = (RSS at 1,000 apps − at 100) \
             / 900. Median of {reps} fresh runtimes. Goals: base ≤ 30 MB, ≤ 50 KB per app, ≤ 30 KB \
             per worker (the seed document budgets 200 MB for a runtime)."
        ),
        header: vec!["measure", "median", "min–max"],
        ..Section::default()
    };
    let mib = |s: &Summary| (format!("{} MiB", fmt(s.median)), format!("{}–{}", fmt(s.min), fmt(s.max)));
    for (label, s) in [
        ("base (no apps, no workers)", Summary::of(&col(0))),
        (&*format!("{workers} placeholder workers connected"), Summary::of(&col(1))),
        ("+ 100 apps", Summary::of(&col(2))),
        ("+ 1,000 apps", Summary::of(&col(3))),
    ] {
        let (m, r) = mib(&s);
        section.rows.push(vec![label.to_owned(), m, r]);
    }
    section.rows.push(vec![
        "per connected worker".into(),
        format!("{} KiB", fmt(pw.median)),
        format!("{}–{}", fmt(pw.min), fmt(pw.max)),
    ]);
    section.rows.push(vec![
        "per app".into(),
        format!("{} KiB", fmt(pa.median)),
        format!("{}–{}", fmt(pa.min), fmt(pa.max)),
    ]);
    let verdict = |ok: bool| if ok { "goal met" } else { "goal missed" };
    section.notes.push(format!(
        "Base {} MiB ({}), {} KiB per worker ({}), {} KiB per app ({}).",
        fmt(base.median),
        verdict(base.median * 1.048_576 <= 30.0),
        fmt(pw.median),
        verdict(pw.median * 1.024 <= 30.0),
        fmt(pa.median),
        verdict(pa.median * 1.024 <= 50.0)
    ));
    section.publish();

    // Density: a 7 GB node running one runtime and one specialized Python worker per app.
    let (placeholder_kib, ready_kib) = python_worker_rss(binary, &dir).await;
    let node_kib = 7.0 * 1024.0 * 1024.0;
    let runtime_kib = base.median * 1024.0;
    let per_app_kib = pa.median + ready_kib;
    let apps = ((node_kib - runtime_kib) / per_app_kib).floor();
    let mut density = Section {
        name: "density",
        title: "Density: apps per 7 GB node",
        command: "cargo run --release -p switchboard-bench -- memory".into(),
        intro: "Computed from figures measured in the same run: the runtime's base RSS and per-app \
                cost (above) and the RSS of a real Python worker (azure-functions-worker 1.1.9) \
                specialized for the `hello` example. One runtime per node; each app with one \
                specialized worker of its own (workers are one-way: they serve one app)."
            .into(),
        header: vec!["input", "value"],
        ..Section::default()
    };
    density.rows.push(vec![
        "Python worker RSS, placeholder".into(),
        format!("{} MiB", fmt(placeholder_kib / 1024.0)),
    ]);
    density.rows.push(vec![
        "Python worker RSS, specialized (hello)".into(),
        format!("{} MiB", fmt(ready_kib / 1024.0)),
    ]);
    density.rows.push(vec!["runtime base RSS".into(), format!("{} MiB", fmt(base.median))]);
    density.rows.push(vec!["runtime per app".into(), format!("{} KiB", fmt(pa.median))]);
    density.rows.push(vec!["**apps per 7 GB node**".into(), format!("**{apps}**")]);
    density.notes.push(format!(
        "{apps} apps per node vs the seed document's 14–28 today (a host process per app) and 45–90 \
         target: the runtime's share is {:.1}% of the node; the rest is the workers themselves, so \
         density is now bounded by the language worker's own footprint.",
        100.0 * (runtime_kib + pa.median * apps) / node_kib
    ));
    density.publish();
    let _ = std::fs::remove_dir_all(&dir);
}
