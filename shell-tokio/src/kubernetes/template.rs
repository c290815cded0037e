//! Worker pods: built from a pool's template, labelled so that each runtime finds its own, and
//! read back (which worker, which pool, alive or not).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{EnvVar, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use switchboard_core::{PoolKey, ProvisionRequest, WorkerId};
use switchboard_shell::config;

/// Every pod Switchboard creates carries `app.kubernetes.io/managed-by=switchboard`.
pub(super) const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The runtime that owns the pod: it alone adopts or deletes it.
pub(super) const RUNTIME: &str = "switchboard.io/runtime";
/// The pool's language.
pub(super) const LANGUAGE: &str = "switchboard.io/language";
/// The pool's version (may be empty).
pub(super) const VERSION: &str = "switchboard.io/version";
/// The worker id the pod's worker presents (`--workerId`).
pub(super) const WORKER: &str = "switchboard.io/worker-id";
/// Annotation: the provision request id (`--requestId`).
pub(super) const REQUEST: &str = "switchboard.io/request-id";

/// The label selector of one runtime's pods.
pub(super) fn selector(runtime_id: &str) -> String {
    format!("{MANAGED_BY}=switchboard,{RUNTIME}={runtime_id}")
}

/// Where workers dial and what else goes on their command line.
#[derive(Debug, Clone)]
pub(super) struct WorkerArgs {
    /// `--host`: the runtime's worker Service.
    pub(super) host: String,
    /// `--port`.
    pub(super) port: u16,
    /// `--grpcMaxMessageLength`.
    pub(super) max_message: usize,
}

/// Who creates the pods.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    /// The value of the [`RUNTIME`] label.
    pub(super) runtime_id: String,
    /// The runtime's own pod, when known: worker pods are deleted with it.
    pub(super) owner: Option<OwnerReference>,
}

/// One pool's pods.
#[derive(Debug, Clone)]
pub(super) struct PoolPods {
    pub(super) key: PoolKey,
    pub(super) namespace: String,
    pub(super) max: u32,
    template: PodTemplateSpec,
    /// Index of the worker container in the template.
    container: usize,
    /// The pool's `env`, set on the worker container.
    env: BTreeMap<String, String>,
}

impl PoolPods {
    /// Reads and checks a `kubernetes` pool's template.
    pub(super) fn from_config(pool: &config::Pool, default_namespace: &str) -> Result<PoolPods, String> {
        let key = PoolKey::new(&pool.language, &pool.version);
        let k = pool.kubernetes.as_ref().ok_or_else(|| format!("pool {key}: no [pool.kubernetes]"))?;
        let template: PodTemplateSpec = match (&k.pod_template, &k.pod_template_file) {
            (Some(inline), _) => serde_json::from_value(inline.0.clone())
                .map_err(|e| format!("pool {key}: pod_template is not a PodTemplateSpec: {e}"))?,
            (None, Some(file)) => read_template(file).map_err(|e| format!("pool {key}: {e}"))?,
            (None, None) => return Err(format!("pool {key}: no pod template")),
        };
        let containers = template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
        if containers.is_empty() {
            return Err(format!("pool {key}: the pod template has no containers"));
        }
        let container = containers.iter().position(|c| c.name == "worker").unwrap_or(0);
        if containers[container].image.as_deref().unwrap_or_default().is_empty() {
            return Err(format!("pool {key}: the worker container has no image"));
        }
        for value in [pool.language.as_str(), pool.version.as_str()] {
            check_label_value(value).map_err(|e| format!("pool {key}: {e}"))?;
        }
        let namespace = k.namespace.clone().unwrap_or_else(|| default_namespace.to_owned());
        Ok(PoolPods { key, namespace, max: pool.max, template, container, env: pool.env.clone() })
    }

    /// The pod for a provision request: the template, labelled, with the host-style arguments
    /// appended to the worker container's `args`.
    pub(super) fn pod(&self, request: &ProvisionRequest, args: &WorkerArgs, identity: &Identity) -> Pod {
        let template = self.template.clone();
        let mut metadata = template.metadata.unwrap_or_default();
        let mut spec = template.spec.unwrap_or_default();
        metadata.name = Some(pod_name(&self.key, &request.worker));
        metadata.generate_name = None;
        metadata.namespace = Some(self.namespace.clone());
        let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(MANAGED_BY.into(), "switchboard".into());
        labels.insert(RUNTIME.into(), identity.runtime_id.clone());
        labels.insert(LANGUAGE.into(), self.key.language.clone());
        labels.insert(VERSION.into(), self.key.version.clone());
        labels.insert(WORKER.into(), request.worker.to_string());
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(REQUEST.into(), request.request_id.clone());
        if let Some(owner) = &identity.owner {
            metadata.owner_references.get_or_insert_with(Vec::new).push(owner.clone());
        }
        // A worker id admits one stream: a container restarted in place would present a used
        // id and be refused. A dead worker's pod fails instead, and a new pod replaces it.
        spec.restart_policy.get_or_insert_with(|| "Never".into());
        let container = &mut spec.containers[self.container];
        let argv = container.args.get_or_insert_with(Vec::new);
        argv.extend([
            "--host".into(),
            args.host.clone(),
            "--port".into(),
            args.port.to_string(),
            "--workerId".into(),
            request.worker.to_string(),
            "--requestId".into(),
            request.request_id.clone(),
            "--grpcMaxMessageLength".into(),
            args.max_message.to_string(),
        ]);
        let env = container.env.get_or_insert_with(Vec::new);
        for (name, value) in &self.env {
            env.retain(|e| &e.name != name);
            env.push(EnvVar { name: name.clone(), value: Some(value.clone()), value_from: None });
        }
        Pod { metadata, spec: Some(spec), status: None }
    }
}

/// A template file: YAML or JSON (by extension), a `PodTemplateSpec` or a whole Pod manifest.
fn read_template(path: &Path) -> Result<PodTemplateSpec, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| format!("{} is not a PodTemplateSpec: {e}", path.display()))
}

/// `sbw-<language>-<worker id>`: unique per worker, a valid DNS name for core-issued ids.
pub(super) fn pod_name(pool: &PoolKey, worker: &WorkerId) -> String {
    let language: String = pool
        .language
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(16)
        .collect();
    let id: String = worker
        .as_str()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("sbw-{}-{}", language.trim_matches('-'), id.trim_matches('-'))
}

/// The worker id a pod's worker presents.
pub(super) fn worker_of(pod: &Pod) -> Option<WorkerId> {
    label(pod, WORKER).filter(|w| !w.is_empty()).map(|w| WorkerId(w.to_owned()))
}

/// The pool a pod belongs to.
pub(super) fn pool_of(pod: &Pod) -> Option<PoolKey> {
    Some(PoolKey::new(label(pod, LANGUAGE)?, label(pod, VERSION).unwrap_or_default()))
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// The pod's name (for logs).
pub(super) fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// When the pod's worker is gone for good (the pod failed, was evicted, or its container
/// ended): why, as text for the core's `WorkerExited`.
pub(super) fn ended(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let phase = status.phase.as_deref()?;
    if phase != "Failed" && phase != "Succeeded" {
        return None;
    }
    let mut text = format!("pod {phase}");
    if let Some(reason) = status.reason.as_deref().filter(|r| !r.is_empty()) {
        text.push_str(&format!(" ({reason}"));
        if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
            text.push_str(&format!(": {message}"));
        }
        text.push(')');
    }
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| Some((c.name.as_str(), c.state.as_ref()?.terminated.as_ref()?)));
    for (name, t) in terminated {
        text.push_str(&format!(", container {name} exited with code {}", t.exit_code));
        if let Some(reason) = t.reason.as_deref().filter(|r| !r.is_empty()) {
            text.push_str(&format!(" ({reason})"));
        }
    }
    Some(text)
}

/// Whether someone asked the API server to delete the pod.
pub(super) fn deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// A label value: at most 63 characters, alphanumerics with `-`, `_` or `.` inside.
pub(super) fn check_label_value(value: &str) -> Result<(), String> {
    let inner_ok = value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let ends_ok = value.is_empty()
        || (value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if value.len() > 63 || !inner_ok || !ends_ok {
        return Err(format!("{value:?} is not a valid Kubernetes label value"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(template: serde_json::Value) -> config::Pool {
        config::Pool {
            language: "python".into(),
            provisioner: config::ProvisionerKind::Kubernetes,
            env: BTreeMap::from([("A".into(), "1".into())]),
            kubernetes: Some(config::KubePool {
                pod_template: Some(config::PodTemplate(template)),
                ..config::KubePool::default()
            }),
            ..config::Pool::default()
        }
    }

    #[test]
    fn pods_carry_labels_args_env_and_owner() {
        let template = serde_json::json!({
            "metadata": {"labels": {"team": "a"}},
            "spec": {"containers": [
                {"name": "sidecar", "image": "busybox"},
                {"name": "worker", "image": "w:1", "command": ["python"], "args": ["-m", "w"],
                 "env": [{"name": "A", "value": "0"}],
                 "resources": {"limits": {"memory": "512Mi"}}}]}
        });
        let pods = PoolPods::from_config(&pool(template), "ns").unwrap();
        let request = ProvisionRequest {
            worker: WorkerId("0b5e8a52-1d7c-4d0e-9a4e-3f0a1b2c3d4e".into()),
            request_id: "r-1".into(),
            pool: PoolKey::new("python", ""),
        };
        let args = WorkerArgs { host: "sb-workers.sb.svc".into(), port: 7073, max_message: 1024 };
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "rt-0".into(),
            uid: "u-1".into(),
            ..OwnerReference::default()
        };
        let identity = Identity { runtime_id: "rt-0".into(), owner: Some(owner) };
        let pod = pods.pod(&request, &args, &identity);
        assert_eq!(pod.metadata.name.as_deref(), Some("sbw-python-0b5e8a52-1d7c-4d0e-9a4e-3f0a1b2c3d4e"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[MANAGED_BY], "switchboard");
        assert_eq!(labels[RUNTIME], "rt-0");
        assert_eq!(worker_of(&pod), Some(request.worker.clone()));
        assert_eq!(pool_of(&pod), Some(PoolKey::new("python", "")));
        assert_eq!(pod.metadata.owner_references.as_ref().unwrap()[0].uid, "u-1");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let worker = &spec.containers[1];
        let argv = worker.args.as_ref().unwrap();
        assert_eq!(argv[..4], ["-m", "w", "--host", "sb-workers.sb.svc"]);
        assert!(argv.windows(2).any(|w| w == ["--workerId", request.worker.as_str()]));
        let env = worker.env.as_ref().unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].value.as_deref(), Some("1"), "the pool's env wins");
        assert!(spec.containers[0].args.is_none(), "other containers are left alone");
        assert!(ended(&pod).is_none());
    }

    #[test]
    fn templates_need_a_container_with_an_image() {
        let e =
            PoolPods::from_config(&pool(serde_json::json!({"spec": {"containers": []}})), "ns").unwrap_err();
        assert!(e.contains("no containers"), "{e}");
        let e =
            PoolPods::from_config(&pool(serde_json::json!({"spec": {"containers": [{"name": "w"}]}})), "ns")
                .unwrap_err();
        assert!(e.contains("no image"), "{e}");
    }

    #[test]
    fn a_yaml_pod_manifest_is_a_template() {
        let dir = std::env::temp_dir().join(format!("sb-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pod.yaml");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {team: b}\nspec:\n  containers:\n  - name: worker\n    image: w:2\n",
        )
        .unwrap();
        let mut p = pool(serde_json::Value::Null);
        p.kubernetes =
            Some(config::KubePool { pod_template_file: Some(file), ..config::KubePool::default() });
        let pods = PoolPods::from_config(&p, "ns").unwrap();
        assert_eq!(pods.template.spec.as_ref().unwrap().containers[0].image.as_deref(), Some("w:2"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ended_pods_say_why() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory",
                "containerStatuses": [{"name": "worker", "image": "w", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        }))
        .unwrap();
        assert_eq!(
            ended(&pod).unwrap(),
            "pod Failed (Evicted: low on memory), container worker exited with code 137 (OOMKilled)"
        );
    }

    /// deploy/kubernetes/configmap.yaml holds a config and a pod template this code accepts.
    #[test]
    fn the_deploy_manifests_config_and_template_are_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/configmap.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let configmap: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let toml = configmap["data"]["switchboard.toml"].as_str().unwrap();
        let config = config::Config::parse(toml).unwrap();
        config.validate().unwrap();
        let dir = std::env::temp_dir().join(format!("sb-deploy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("python-worker-pod.yaml");
        std::fs::write(&file, configmap["data"]["python-worker-pod.yaml"].as_str().unwrap()).unwrap();
        let mut pool = config.pools[0].clone();
        pool.kubernetes.as_mut().unwrap().pod_template_file = Some(file);
        let pods = PoolPods::from_config(&pool, config.kubernetes.namespace.as_deref().unwrap()).unwrap();
        assert_eq!(pods.namespace, "switchboard");
        let spec = pods.template.spec.as_ref().unwrap();
        assert_eq!(spec.containers[pods.container].image.as_deref(), Some("switchboard/python-worker:1.1.9"));
        assert_eq!(
            config.kubernetes.worker_host.as_deref(),
            Some("switchboard-workers.switchboard.svc.cluster.local")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn label_values() {
        assert!(check_label_value("rt-0.a_b").is_ok());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("-x").is_err());
        assert!(check_label_value(&"a".repeat(64)).is_err());
        assert!(check_label_value("a/b").is_err());
    }
}
