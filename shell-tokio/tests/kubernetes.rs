//! The kubernetes provisioner against a real Kubernetes API server: `../shared/k8s-test`
//! (etcd and ktestapi; no scheduler, no kubelet). The test plays the kubelet: it watches the
//! pods Switchboard creates, runs each pod's worker command as a local process that dials
//! 127.0.0.1 (the real Azure Functions Python worker from PyPI), and patches the pod's status to
//! Running, and to Failed when the process dies.
//!
//! Each test starts its own API server (its own state folder and port), so they run in
//! parallel. The kit is found through `K8S_TEST_KIT`, else at `<repo>/../shared/k8s-test`; when
//! it is missing the tests fail (CI has it), they never skip.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config as KubeConfig};
use serde_json::json;
use switchboard_shell::Started;
use switchboard_shell::config::{Config, KubePool, Kubernetes, PodTemplate, Pool, ProvisionerKind};
use switchboard_shell::driver::Handle;
use switchboard_shell::provision::python::{default_cache_dir, worker_command};
use switchboard_tests::{TestRuntime, examples, test_config, wait_for};
use tokio::sync::Semaphore;

const NS: &str = "default";
const MANAGED: &str = "app.kubernetes.io/managed-by=switchboard";
/// The Service name workers are told to dial; the fake kubelet resolves it to 127.0.0.1.
const SERVICE: &str = "switchboard-workers.default.svc.cluster.local";

// ---------------------------------------------------------------------------------------------
// The API server

/// One API server (etcd + ktestapi) for one test: up.sh on start, down.sh on drop. Its state
/// folder is its own (test name and process id: runs on one machine do not meet); the unpacked
/// binaries are shared by all (`bin` links to one cache folder).
struct Cluster {
    kit: PathBuf,
    state: PathBuf,
    port: u16,
}

/// The kit: `K8S_TEST_KIT`, else `shared/k8s-test` beside the checkout, else `/work/shared`.
fn kit() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("K8S_TEST_KIT") {
        Some(kit) => vec![PathBuf::from(kit)],
        None => vec![
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/k8s-test"),
            PathBuf::from("/work/shared/k8s-test"),
        ],
    };
    let found = candidates.iter().find(|kit| kit.join("up.sh").exists());
    found.cloned().unwrap_or_else(|| {
        panic!("the Kubernetes test kit is missing (looked in {candidates:?}; set K8S_TEST_KIT to shared/k8s-test)")
    })
}

impl Cluster {
    async fn up(name: &str) -> Cluster {
        let kit = kit();
        let state = std::env::temp_dir().join(format!("switchboard-k8s-{name}-{}", std::process::id()));
        let bin = std::env::temp_dir().join("switchboard-k8s-bin");
        std::fs::create_dir_all(&bin).unwrap();
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        std::os::unix::fs::symlink(&bin, state.join("bin")).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let cluster = Cluster { kit: kit.clone(), state: state.clone(), port };
            match cluster.start().await {
                Ok(()) => return cluster,
                Err(e) if e.contains("already in use") => {
                    std::mem::forget(cluster);
                    continue;
                }
                Err(e) => {
                    std::mem::forget(cluster);
                    panic!("up.sh {} {port} failed:\n{e}", state.display());
                }
            }
        }
        panic!("no free port for the API server");
    }

    /// up.sh on this cluster's folder and port (a fresh etcd: the API server starts empty).
    /// One up.sh at a time on this machine: the first one unpacks the shared binaries.
    async fn start(&self) -> Result<(), String> {
        let (kit, state, port) = (self.kit.clone(), self.state.clone(), self.port);
        let out = tokio::task::spawn_blocking(move || {
            let lock = std::fs::File::create(std::env::temp_dir().join("switchboard-k8s-bin.lock")).unwrap();
            lock.lock().unwrap();
            std::process::Command::new(kit.join("up.sh")).arg(&state).arg(port.to_string()).output()
        })
        .await
        .unwrap()
        .expect("run up.sh");
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }

    async fn stop(&self) {
        let out =
            tokio::process::Command::new(self.kit.join("down.sh")).arg(&self.state).output().await.unwrap();
        assert!(out.status.success(), "down.sh: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn kubeconfig(&self) -> PathBuf {
        self.state.join("kubeconfig")
    }

    async fn pods(&self) -> Api<Pod> {
        Api::namespaced(client(&self.kubeconfig()).await.expect("a client for the test API server"), NS)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(self.kit.join("down.sh")).arg(&self.state).output();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn client(kubeconfig: &Path) -> Result<Client, String> {
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config = KubeConfig::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

async fn list(pods: &Api<Pod>, labels: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(labels)).await.expect("list pods").items
}

fn label<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(key)).map_or("", String::as_str)
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().map(name).collect()
}

// ---------------------------------------------------------------------------------------------
// The fake kubelet

/// Runs the pods labelled `managed-by=switchboard` as local processes.
struct Kubelet {
    state: Arc<Mutex<KubeletState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct KubeletState {
    running: HashMap<String, Proc>,
    /// Every pod ever started, with when.
    started: Vec<(String, Instant)>,
    /// How long a deleted pod's process lives on (a graceful termination).
    kill_delay: Duration,
    next_gen: u64,
}

#[derive(Clone)]
struct Proc {
    pid: u32,
    generation: u64,
    argv: Vec<String>,
    env: Vec<(String, String)>,
}

impl Kubelet {
    fn start(cluster: &Cluster) -> Kubelet {
        let state = Arc::new(Mutex::new(KubeletState::default()));
        let task = tokio::spawn(kubelet(cluster.kubeconfig(), Arc::clone(&state)));
        Kubelet { state, task }
    }

    fn started(&self) -> Vec<(String, Instant)> {
        self.state.lock().unwrap().started.clone()
    }

    fn running(&self) -> BTreeSet<String> {
        self.state.lock().unwrap().running.keys().cloned().collect()
    }

    fn pid(&self, pod: &str) -> Option<u32> {
        self.state.lock().unwrap().running.get(pod).map(|p| p.pid)
    }

    fn set_kill_delay(&self, delay: Duration) {
        self.state.lock().unwrap().kill_delay = delay;
    }

    /// Restarts a pod's process in place (same command, so the same worker id): a worker that
    /// redials after losing its runtime.
    fn restart(&self, pod: &str) {
        let mut state = self.state.lock().unwrap();
        let old = state.running.get(pod).cloned().expect("the pod runs");
        kill(old.pid);
        state.next_gen += 1;
        let generation = state.next_gen;
        let child = spawn_worker(&old.argv, &old.env);
        let pid = child.id().unwrap();
        state.running.insert(pod.to_owned(), Proc { pid, generation, ..old });
        tokio::spawn(async move {
            let mut child = child;
            let _ = child.wait().await;
        });
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        for proc in self.state.lock().unwrap().running.values() {
            kill(proc.pid);
        }
    }
}

fn kill(pid: u32) {
    switchboard_tests::kill(pid, libc::SIGKILL);
}

/// The kubelet loop: watch, start, patch; on a watch failure (the API server went away),
/// reconnect with a fresh kubeconfig (a restarted test server has a new CA).
async fn kubelet(kubeconfig: PathBuf, state: Arc<Mutex<KubeletState>>) {
    loop {
        let Ok(client) = client(&kubeconfig).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let pods: Api<Pod> = Api::namespaced(client, NS);
        let mut events = std::pin::pin!(watcher(pods.clone(), watcher::Config::default().labels(MANAGED)));
        let mut listed: Option<BTreeSet<String>> = None;
        while let Some(event) = events.next().await {
            match event {
                Err(error) => {
                    tracing::debug!(target: "kubelet", %error, "watch failed");
                    break;
                }
                Ok(watcher::Event::Init) => listed = Some(BTreeSet::new()),
                Ok(watcher::Event::InitApply(pod)) => {
                    if let Some(l) = listed.as_mut() {
                        l.insert(name(&pod));
                    }
                    run_pod(&pods, &state, pod).await;
                }
                Ok(watcher::Event::InitDone) => {
                    // Pods that are gone from the API server: stop their processes, as a kubelet does.
                    let listed = listed.take().unwrap_or_default();
                    let gone: Vec<String> = state
                        .lock()
                        .unwrap()
                        .running
                        .keys()
                        .filter(|p| !listed.contains(*p))
                        .cloned()
                        .collect();
                    for pod in gone {
                        tracing::debug!(target: "kubelet", pod, "gone from the API server");
                        stop_pod(&state, &pod);
                    }
                }
                Ok(watcher::Event::Apply(pod)) => run_pod(&pods, &state, pod).await,
                Ok(watcher::Event::Delete(pod)) => stop_pod(&state, &name(&pod)),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn stop_pod(state: &Arc<Mutex<KubeletState>>, pod: &str) {
    let (proc, delay) = {
        let mut state = state.lock().unwrap();
        (state.running.remove(pod), state.kill_delay)
    };
    if let Some(proc) = proc {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            kill(proc.pid);
        });
    }
}

async fn run_pod(pods: &Api<Pod>, state: &Arc<Mutex<KubeletState>>, pod: Pod) {
    let pod_name = name(&pod);
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        stop_pod(state, &pod_name); // graceful termination: the pod stays until its finalizers go
        return;
    }
    if phase == "Failed" || phase == "Succeeded" {
        return;
    }
    if phase == "Running" || state.lock().unwrap().running.contains_key(&pod_name) {
        return;
    }
    let spec = pod.spec.as_ref().expect("a pod spec");
    let container = spec.containers.iter().find(|c| c.name == "worker").unwrap_or(&spec.containers[0]);
    let mut argv: Vec<String> = container.command.clone().unwrap_or_default();
    argv.extend(container.args.clone().unwrap_or_default());
    // Cluster DNS: the runtime's Service is this machine.
    if let Some(i) = argv.iter().position(|a| a == "--host") {
        assert_eq!(argv[i + 1], SERVICE, "workers dial the runtime's Service");
        argv[i + 1] = "127.0.0.1".into();
    }
    let mut env: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    for var in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(var) {
            env.push((var.into(), value));
        }
    }
    let mut child = spawn_worker(&argv, &env);
    let pid = child.id().unwrap();
    tracing::debug!(target: "kubelet", pod = pod_name, pid, "started");
    let generation = {
        let mut s = state.lock().unwrap();
        s.next_gen += 1;
        let generation = s.next_gen;
        s.running.insert(pod_name.clone(), Proc { pid, generation, argv, env });
        s.started.push((pod_name.clone(), Instant::now()));
        generation
    };
    let status = json!({"status": {"phase": "Running", "podIP": "127.0.0.1",
        "containerStatuses": [{"name": container.name, "image": container.image, "imageID": "",
            "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
    let _ = pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&status)).await;
    // When the process ends on its own, the pod fails.
    let (pods, state, container_name) = (pods.clone(), Arc::clone(state), container.name.clone());
    tokio::spawn(async move {
        let exit = child.wait().await.map(|s| s.code().unwrap_or(137)).unwrap_or(137);
        let ours = {
            let mut s = state.lock().unwrap();
            let ours = s.running.get(&pod_name).is_some_and(|p| p.generation == generation);
            if ours {
                s.running.remove(&pod_name);
            }
            ours
        };
        if ours {
            let status = json!({"status": {"phase": "Failed", "containerStatuses": [{"name": container_name,
                "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit, "reason": "Error"}}}]}});
            let _ = pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&status)).await;
        }
    });
}

fn spawn_worker(argv: &[String], env: &[(String, String)]) -> tokio::process::Child {
    tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {argv:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Runtimes

/// At most this many tests run their servers and workers at once (the machine has 2 cores).
static SLOTS: Semaphore = Semaphore::const_new(3);

async fn python_command() -> Vec<String> {
    tokio::task::spawn_blocking(|| worker_command(&default_cache_dir()))
        .await
        .unwrap()
        .expect("the Python worker installs")
}

/// A runtime config: one `kubernetes` pool whose pods run the real Python worker.
async fn config(cluster: &Cluster, runtime_id: &str, min_idle: u32, max: u32) -> Config {
    let command = python_command().await;
    let template = json!({
        "metadata": {"labels": {"app": "python-worker"}},
        "spec": {"containers": [{
            "name": "worker",
            "image": "switchboard/python-worker:1.1.9",
            "command": command,
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
        }]}
    });
    kube_config(cluster, runtime_id, pool("python", min_idle, max, template))
}

fn pool(language: &str, min_idle: u32, max: u32, template: serde_json::Value) -> Pool {
    Pool {
        language: language.into(),
        min_idle,
        max,
        provisioner: ProvisionerKind::Kubernetes,
        kubernetes: Some(KubePool {
            namespace: Some(NS.into()),
            pod_template: Some(PodTemplate(template)),
            pod_template_file: None,
        }),
        ..Pool::default_python()
    }
}

fn kube_config(cluster: &Cluster, runtime_id: &str, pool: Pool) -> Config {
    let mut c = test_config(0, 1);
    c.pools = vec![pool];
    c.kubernetes = Kubernetes {
        kubeconfig: Some(cluster.kubeconfig()),
        runtime_id: Some(runtime_id.into()),
        worker_host: Some(SERVICE.into()),
        adopt_grace: Duration::from_secs(10),
        ..Kubernetes::default()
    };
    c
}

/// The core's workers as (id, state label, app).
async fn workers(rt: &TestRuntime) -> Vec<(String, String, Option<String>)> {
    workers_of(&rt.started.handle).await
}

async fn workers_of(handle: &Handle) -> Vec<(String, String, Option<String>)> {
    handle
        .with_core(|core, now| {
            core.workers(now).into_iter().map(|w| (w.id, w.state.label().to_owned(), w.app)).collect()
        })
        .await
        .unwrap()
}

async fn idle(rt: &TestRuntime) -> usize {
    idle_of(&rt.started.handle).await
}

async fn idle_of(handle: &Handle) -> usize {
    workers_of(handle).await.iter().filter(|w| w.1 == "placeholder").count()
}

/// A runtime on its own tokio runtime, so that it can die abruptly: every task dropped, no
/// shutdown, its pods left behind.
struct Crashable {
    tokio: tokio::runtime::Runtime,
    started: Started,
}

impl Crashable {
    fn start(config: Config) -> Crashable {
        let tokio =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let handle = tokio.handle().clone();
        let started = std::thread::spawn(move || handle.block_on(switchboard_tokio::start(config, &[])))
            .join()
            .unwrap()
            .expect("the runtime starts");
        Crashable { tokio, started }
    }

    async fn crash(self) {
        let Crashable { tokio, started } = self;
        tokio::task::spawn_blocking(move || tokio.shutdown_timeout(Duration::from_secs(2))).await.unwrap();
        drop(started);
    }
}

/// Logs of the kubernetes provisioner, captured for all tests (each filters by its runtime id).
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let filter = std::env::var("RUST_LOG")
            .unwrap_or_else(|_| "switchboard_tokio=info,kube_client=info,kube_runtime=info".into());
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || LogWriter(buf))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buf
    })
}

struct LogWriter(&'static Mutex<Vec<u8>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Prints a runtime's captured logs if the test fails.
struct DumpLogsOnPanic(&'static str);

impl Drop for DumpLogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = logs().lock().unwrap();
            let tag = format!("runtime={}", self.0);
            let mine: Vec<&str> = std::str::from_utf8(&logs)
                .unwrap_or("")
                .lines()
                .filter(|l| {
                    std::env::var_os("RUST_LOG").is_some() || l.contains(&tag) || l.contains(" kubelet: ")
                })
                .collect();
            eprintln!("--- logs of {}:\n{}", self.0, mine.join("\n"));
        }
    }
}

fn log_lines(runtime_id: &str, needle: &str) -> usize {
    let logs = logs().lock().unwrap();
    let tag = format!("runtime={runtime_id} ");
    String::from_utf8_lossy(&logs).lines().filter(|l| l.contains(&tag) && l.contains(needle)).count()
}

// ---------------------------------------------------------------------------------------------
// Tests

/// 1. A pool with `min_idle = 3` creates exactly 3 pods (rate-limited), and an app is served end
/// to end by the real Python worker started through a pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_idle_three_creates_three_pods_and_an_app_is_served_through_them() {
    let _slot = SLOTS.acquire().await.unwrap();
    logs();
    let _dump = DumpLogsOnPanic("rt-pool");
    let cluster = Cluster::up("pool").await;
    let kubelet = Kubelet::start(&cluster);
    let pods = cluster.pods().await;
    let mut config = config(&cluster, "rt-pool", 3, 8).await;
    config.kubernetes.creates_per_second = 4;
    config.kubernetes.create_burst = 1;
    let rt = TestRuntime::start(config, &[examples().join("hello")]).await;

    wait_for(Duration::from_secs(60), "3 warm placeholders", || async {
        (idle(&rt).await == 3).then_some(())
    })
    .await;
    let listed = list(&pods, "switchboard.io/runtime=rt-pool").await;
    assert_eq!(listed.len(), 3, "{:?}", names(&listed));
    let started = kubelet.started();
    assert_eq!(started.len(), 3, "exactly three pods were ever created");
    let spread = started[2].1 - started[0].1;
    assert!(spread >= Duration::from_millis(400), "4 creates/s with no burst: 3 pods took {spread:?}");
    let ids: BTreeSet<String> = workers(&rt).await.into_iter().map(|w| w.0).collect();
    for pod in &listed {
        assert_eq!(label(pod, "app.kubernetes.io/managed-by"), "switchboard");
        assert_eq!(label(pod, "switchboard.io/language"), "python");
        assert_eq!(label(pod, "app"), "python-worker", "the template's labels are kept");
        assert!(ids.contains(label(pod, "switchboard.io/worker-id")), "each pod is a connected worker");
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0, "512Mi");
        let args = c.args.as_ref().unwrap();
        assert!(args.windows(2).any(|w| w == ["--host", SERVICE]), "{args:?}");
        assert!(
            args.windows(2).any(|w| w[0] == "--workerId" && w[1] == label(pod, "switchboard.io/worker-id"))
        );
    }

    let r = rt.get("hello/api/hello?name=Ada").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, Ada!".to_owned()));
    let serving =
        workers(&rt).await.into_iter().find(|w| w.2.as_deref() == Some("hello")).expect("hello's worker");
    assert!(
        listed.iter().any(|p| label(p, "switchboard.io/worker-id") == serving.0),
        "it runs in one of the pods"
    );
    // The pool refills: a fourth pod, three idle placeholders again.
    wait_for(Duration::from_secs(60), "the pool to refill", || async {
        let n = list(&pods, "switchboard.io/runtime=rt-pool").await.len();
        (n == 4 && idle(&rt).await == 3).then_some(())
    })
    .await;

    rt.shutdown().await;
    assert!(list(&pods, MANAGED).await.is_empty(), "shutdown deletes every pod");
    wait_for(Duration::from_secs(10), "the kubelet to stop every process", || async {
        kubelet.running().is_empty().then_some(())
    })
    .await;
}

/// 2. Deleting a worker's pod behind the runtime's back: the worker is settled as lost (its
/// in-flight call answered at once, before its process even ends) and a replacement appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_worker_pod_settles_the_worker_as_lost_and_replaces_it() {
    let _slot = SLOTS.acquire().await.unwrap();
    logs();
    let _dump = DumpLogsOnPanic("rt-delete");
    let cluster = Cluster::up("delete").await;
    let kubelet = Kubelet::start(&cluster);
    let pods = cluster.pods().await;
    let rt = TestRuntime::start(config(&cluster, "rt-delete", 1, 4).await, &[examples().join("hello")]).await;
    assert_eq!(rt.get("hello/api/hello").await.status, 200);
    let (worker, ..) = workers(&rt).await.into_iter().find(|w| w.2.as_deref() == Some("hello")).unwrap();
    let victim = list(&pods, &format!("switchboard.io/worker-id={worker}")).await.remove(0);
    // A graceful termination: the process outlives its pod by 3 s, so only the pod's deletion
    // can tell the runtime the worker is gone.
    kubelet.set_kill_delay(Duration::from_secs(3));

    let slow = rt.get("hello/api/slow?ms=20000");
    let deleter = async {
        wait_for(Duration::from_secs(10), "the slow call to reach the worker", || async {
            let busy = rt
                .started
                .handle
                .with_core(|core, now| core.workers(now).iter().any(|w| w.in_flight == 1))
                .await
                .unwrap();
            busy.then_some(())
        })
        .await;
        pods.delete(&name(&victim), &DeleteParams::default()).await.unwrap();
        Instant::now()
    };
    let (r, deleted_at) = tokio::join!(slow, deleter);
    let waited = deleted_at.elapsed();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("pod deleted"), "{}", r.text());
    assert!(waited < Duration::from_secs(2), "settled {waited:?} after the delete, before the process died");
    assert!(!workers(&rt).await.iter().any(|w| w.0 == worker), "the worker is gone");

    // A replacement pod; the app is served again.
    let r = rt.get("hello/api/hello?name=again").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, again!".to_owned()));
    wait_for(Duration::from_secs(60), "a replacement placeholder", || async {
        (idle(&rt).await == 1).then_some(())
    })
    .await;
    let now = names(&list(&pods, MANAGED).await);
    assert!(!now.contains(&name(&victim)), "{now:?}");
    assert_eq!(now.len(), 2, "one specialized, one placeholder: {now:?}");
    rt.shutdown().await;
    assert!(list(&pods, MANAGED).await.is_empty());
}

/// 3. A pod whose process exits is marked Failed by the kubelet: the runtime reports the worker
/// gone, deletes the failed pod and creates a replacement, backing off (capped exponential)
/// while the pods keep failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_process_exits_fails_and_is_replaced_with_backoff() {
    let _slot = SLOTS.acquire().await.unwrap();
    logs();
    let _dump = DumpLogsOnPanic("rt-crash");
    let cluster = Cluster::up("crash").await;
    let kubelet = Kubelet::start(&cluster);
    let pods = cluster.pods().await;
    let template = json!({"spec": {"containers": [{
        "name": "worker", "image": "example/crashing-worker:1", "command": ["sh", "-c", "exit 3"]}]}});
    let rt = TestRuntime::start(kube_config(&cluster, "rt-crash", pool("custom", 1, 2, template)), &[]).await;

    let started = wait_for(Duration::from_secs(30), "six pods, one after another", || async {
        let started = kubelet.started();
        (started.len() >= 6).then_some(started)
    })
    .await;
    let gaps: Vec<Duration> = started.windows(2).map(|w| w[1].1 - w[0].1).take(5).collect();
    // The core's provision backoff: 200 ms, 400 ms, 800 ms, 1.6 s, 3.2 s (capped at 10 s).
    assert!(gaps[4] >= Duration::from_millis(2500) && gaps[4] < Duration::from_secs(11), "{gaps:?}");
    assert!(gaps[4] > gaps[2] * 2 && gaps[2] > gaps[0], "the delays grow: {gaps:?}");
    let failures = rt.started.handle.with_core(|core, _| core.pools()[0].failures).await.unwrap();
    assert!(failures >= 5, "{failures}");
    // Failed pods do not pile up: the runtime deletes each one.
    let listed = list(&pods, MANAGED).await;
    assert!(listed.len() <= 2, "{:?}", names(&listed));
    let first = &started[0].0;
    assert!(!names(&listed).contains(first), "the first failed pod was deleted");
    rt.shutdown().await;
}

/// 4. The runtime dies without cleaning up and starts again with the same identity: the pod
/// whose worker redials is adopted, the one whose worker never comes back (the real Python
/// worker does not redial) is deleted after the grace; none leak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runtime_adopts_or_removes_its_old_pods() {
    let _slot = SLOTS.acquire().await.unwrap();
    logs();
    let _dump = DumpLogsOnPanic("rt-restart");
    let cluster = Cluster::up("restart").await;
    let kubelet = Kubelet::start(&cluster);
    let pods = cluster.pods().await;

    let first = Crashable::start(config(&cluster, "rt-restart", 2, 4).await);
    let worker_addr = first.started.workers;
    wait_for(Duration::from_secs(60), "2 placeholders in the first run", || async {
        (idle_of(&first.started.handle).await == 2).then_some(())
    })
    .await;
    let old = list(&pods, "switchboard.io/runtime=rt-restart").await;
    assert_eq!(old.len(), 2);
    first.crash().await;
    assert_eq!(names(&list(&pods, MANAGED).await), names(&old), "pods outlive their runtime");

    // The second incarnation: same runtime id, same worker address (the Service).
    let mut config2 = config(&cluster, "rt-restart", 2, 4).await;
    config2.listen.workers = worker_addr;
    let rt = TestRuntime::start(config2, &[examples().join("hello")]).await;
    let (back, gone) = (name(&old[0]), name(&old[1]));
    let back_id = label(&old[0], "switchboard.io/worker-id").to_owned();
    let gone_id = label(&old[1], "switchboard.io/worker-id").to_owned();
    kubelet.restart(&back);

    wait_for(Duration::from_secs(30), "the redialing worker to be adopted", || async {
        workers(&rt).await.iter().any(|w| w.0 == back_id && w.1 == "placeholder").then_some(())
    })
    .await;
    let listed = names(&list(&pods, MANAGED).await);
    assert!(listed.contains(&gone), "the other old pod waits for its grace: {listed:?}");
    assert_eq!(listed.len(), 2, "no replacement while old pods may come back: {listed:?}");

    wait_for(Duration::from_secs(30), "the silent old pod to be deleted and replaced", || async {
        let listed = names(&list(&pods, MANAGED).await);
        (!listed.contains(&gone) && listed.len() == 2 && idle(&rt).await == 2).then_some(())
    })
    .await;
    let listed = names(&list(&pods, MANAGED).await);
    assert!(listed.contains(&back), "the adopted pod stays: {listed:?}");
    assert!(!workers(&rt).await.iter().any(|w| w.0 == gone_id));
    wait_for(Duration::from_secs(10), "the deleted pod's process to stop", || async {
        (!kubelet.running().contains(&gone)).then_some(())
    })
    .await;

    // The adopted worker serves like any other.
    let r = rt.get("hello/api/hello?name=again").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, again!".to_owned()));
    rt.shutdown().await;
    assert!(list(&pods, MANAGED).await.is_empty(), "nothing leaks");
}

/// 5. The API server stops for 5 s: the runtime keeps serving, logs the outage once, and
/// provisions again once the API server is back (a fresh one: its etcd starts empty, so the
/// runtime's pods are gone from it and their workers are replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_outage_does_not_stop_serving_and_provisioning_resumes() {
    let _slot = SLOTS.acquire().await.unwrap();
    logs();
    let _dump = DumpLogsOnPanic("rt-outage");
    let cluster = Cluster::up("outage").await;
    let kubelet = Kubelet::start(&cluster);
    let rt = TestRuntime::start(config(&cluster, "rt-outage", 1, 4).await, &[examples().join("hello")]).await;
    assert_eq!(rt.get("hello/api/hello").await.status, 200);
    wait_for(Duration::from_secs(60), "a placeholder besides hello's worker", || async {
        (idle(&rt).await == 1).then_some(())
    })
    .await;
    let before: BTreeSet<String> = workers(&rt).await.into_iter().map(|w| w.0).collect();

    cluster.stop().await;
    let down_at = Instant::now();
    // A worker dies during the outage: its pod cannot be deleted nor a replacement created yet.
    let placeholder = workers(&rt).await.into_iter().find(|w| w.1 == "placeholder").unwrap().0;
    let pod = kubelet.running().into_iter().find(|p| p.ends_with(&placeholder)).unwrap();
    kill(kubelet.pid(&pod).unwrap());
    let mut served = 0;
    while down_at.elapsed() < Duration::from_secs(5) {
        let r = rt.get("hello/api/hello?name=outage").await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, outage!".to_owned()), "serving continues");
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served >= 20, "{served}");
    assert_eq!(log_lines("rt-outage", "kubernetes API unavailable"), 1, "logged once, not per retry");
    assert_eq!(
        log_lines("rt-outage", " WARN ") + log_lines("rt-outage", " ERROR "),
        1,
        "nothing else, not per retry"
    );

    cluster.start().await.expect("the API server starts again");
    let pods = cluster.pods().await;
    wait_for(Duration::from_secs(60), "provisioning to resume", || async {
        let listed = list(&pods, MANAGED).await;
        let fresh = listed.iter().filter(|p| !before.contains(label(p, "switchboard.io/worker-id"))).count();
        (fresh >= 1 && idle(&rt).await >= 1).then_some(())
    })
    .await;
    let r = rt.get("hello/api/hello?name=back").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, back!".to_owned()));
    assert_eq!(log_lines("rt-outage", "kubernetes API unavailable"), 1);
    assert_eq!(log_lines("rt-outage", "kubernetes API available again"), 1);
    rt.shutdown().await;
    assert!(list(&pods, MANAGED).await.is_empty());
}

/// 6. Two runtimes on one API server (and a pod of a third that is not running) never delete
/// or adopt each other's pods: not while running, not when one restarts after a crash and
/// reconciles, not at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_never_touch_each_others_pods() {
    let _slot = SLOTS.acquire().await.unwrap();
    logs();
    let _dump = DumpLogsOnPanic("rt-");
    let cluster = Cluster::up("two").await;
    let kubelet = Kubelet::start(&cluster);
    let pods = cluster.pods().await;
    let foreign: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sbw-python-foreign", "labels": {
            "app.kubernetes.io/managed-by": "switchboard", "switchboard.io/runtime": "rt-c",
            "switchboard.io/language": "python", "switchboard.io/version": "",
            "switchboard.io/worker-id": "foreign"}},
        "spec": {"containers": [{"name": "worker", "image": "w", "command": ["sleep", "600"]}]}
    }))
    .unwrap();
    let foreign_uid = pods.create(&PostParams::default(), &foreign).await.unwrap().metadata.uid;
    let uids =
        |pods: &[Pod]| -> BTreeSet<String> { pods.iter().filter_map(|p| p.metadata.uid.clone()).collect() };

    let a = TestRuntime::start(config(&cluster, "rt-a", 2, 4).await, &[]).await;
    let b = Crashable::start(config(&cluster, "rt-b", 2, 4).await);
    wait_for(Duration::from_secs(60), "2 placeholders each", || async {
        (idle(&a).await == 2 && idle_of(&b.started.handle).await == 2).then_some(())
    })
    .await;
    let a_pods = list(&pods, "switchboard.io/runtime=rt-a").await;
    let b_pods = list(&pods, "switchboard.io/runtime=rt-b").await;
    assert_eq!((a_pods.len(), b_pods.len()), (2, 2));
    let a_ids: BTreeSet<String> = workers(&a).await.into_iter().map(|w| w.0).collect();
    let b_ids: BTreeSet<String> = workers_of(&b.started.handle).await.into_iter().map(|w| w.0).collect();
    assert!(a_pods.iter().all(|p| a_ids.contains(label(p, "switchboard.io/worker-id"))));
    assert!(b_pods.iter().all(|p| b_ids.contains(label(p, "switchboard.io/worker-id"))));
    assert!(a_ids.is_disjoint(&b_ids));

    // B dies and starts again: it reconciles its own old pods (they never come back: deleted
    // after the grace) and leaves A's and the third runtime's alone.
    b.crash().await;
    let mut config_b = config(&cluster, "rt-b", 2, 4).await;
    config_b.kubernetes.adopt_grace = Duration::from_secs(3);
    let b = TestRuntime::start(config_b, &[]).await;
    wait_for(Duration::from_secs(60), "B's old pods replaced", || async {
        let now = uids(&list(&pods, "switchboard.io/runtime=rt-b").await);
        (now.len() == 2 && now.is_disjoint(&uids(&b_pods)) && idle(&b).await == 2).then_some(())
    })
    .await;
    let b_ids: BTreeSet<String> = workers(&b).await.into_iter().map(|w| w.0).collect();
    assert!(a_ids.is_disjoint(&b_ids), "B adopted none of A's workers");
    assert_eq!(uids(&list(&pods, "switchboard.io/runtime=rt-a").await), uids(&a_pods), "A's pods untouched");
    assert_eq!(workers(&a).await.len(), 2, "A's workers untouched");

    // A shuts down: only its pods go.
    a.shutdown().await;
    assert!(list(&pods, "switchboard.io/runtime=rt-a").await.is_empty());
    assert_eq!(list(&pods, "switchboard.io/runtime=rt-b").await.len(), 2);
    b.shutdown().await;
    let left = list(&pods, MANAGED).await;
    assert_eq!(names(&left), BTreeSet::from(["sbw-python-foreign".to_owned()]));
    assert_eq!(left[0].metadata.uid, foreign_uid, "the third runtime's pod is never touched");
    drop(kubelet);
}

/// 7. A pool never has more pods than its `max`, counting pods that are still terminating: the
/// runtime creates no replacement until they are gone. (Pods held by a finalizer stay
/// `Terminating`, as pods in their grace period do on a real cluster.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_never_has_more_pods_than_its_max_terminating_ones_included() {
    let _slot = SLOTS.acquire().await.unwrap();
    logs();
    let _dump = DumpLogsOnPanic("rt-max");
    let cluster = Cluster::up("max").await;
    let kubelet = Kubelet::start(&cluster);
    let pods = cluster.pods().await;
    // Workers that never connect: their ids expire after 1 s and the pods are deleted, but a
    // finalizer holds each one in Terminating.
    let template = json!({
        "metadata": {"finalizers": ["example.com/hold"]},
        "spec": {"containers": [{"name": "worker", "image": "example/silent:1", "command": ["sleep", "600"]}]}});
    let mut config = kube_config(&cluster, "rt-max", pool("custom", 2, 2, template));
    config.timeouts.provision = Duration::from_secs(1);
    let rt = TestRuntime::start(config, &[]).await;

    let first = wait_for(Duration::from_secs(20), "the first two pods to be terminating", || async {
        let listed = list(&pods, MANAGED).await;
        let terminating = listed.iter().filter(|p| p.metadata.deletion_timestamp.is_some()).count();
        (terminating == 2).then(|| names(&listed))
    })
    .await;
    // The core keeps asking for replacements (its tickets keep expiring); none is created.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(names(&list(&pods, MANAGED).await), first, "no pod beyond max while two terminate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let provisions = rt.started.handle.with_core(|core, _| core.counters().provisions).await.unwrap();
    assert!(provisions > 2, "the core did ask for more: {provisions}");

    // The terminating pods go: new ones are created, still never more than two.
    for pod in &first {
        let release = json!({"metadata": {"finalizers": null}});
        pods.patch(pod, &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    }
    let mut seen = first.clone();
    let until = Instant::now() + Duration::from_secs(20);
    while seen.len() < 4 {
        assert!(Instant::now() < until, "no new pods after the old ones went: {seen:?}");
        let listed = names(&list(&pods, MANAGED).await);
        assert!(listed.len() <= 2, "{listed:?}");
        seen.extend(listed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the runtime delete what it holds, then release the finalizers for it.
    let stop = tokio::spawn(async move { rt.shutdown().await });
    wait_for(Duration::from_secs(20), "every pod gone", || async {
        let listed = list(&pods, MANAGED).await;
        for pod in listed.iter().filter(|p| p.metadata.deletion_timestamp.is_some()) {
            let release = json!({"metadata": {"finalizers": null}});
            let _ = pods.patch(&name(pod), &PatchParams::default(), &Patch::Merge(&release)).await;
        }
        listed.is_empty().then_some(())
    })
    .await;
    stop.await.unwrap();
    drop(kubelet);
}
