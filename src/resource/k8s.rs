//! Kubernetes attributes from the downward API and the service-account namespace file.
//!
//! The variable names are the ones the OpenTelemetry Operator injects
//! (`OTEL_RESOURCE_ATTRIBUTES_POD_NAME`, `_POD_UID`, `_NODE_NAME`), extended in the same family
//! for the two the operator writes into `OTEL_RESOURCE_ATTRIBUTES` instead
//! (`_NAMESPACE_NAME`, `_CONTAINER_NAME`). `HOSTNAME` is the pod's name only on Kubernetes
//! (`KUBERNETES_SERVICE_HOST` set): anywhere else it names a laptop or a VM.

use std::path::Path;

use opentelemetry::KeyValue;

use super::DetectorEnv;

pub(crate) const POD_NAME_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES_POD_NAME";
pub(crate) const POD_UID_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES_POD_UID";
pub(crate) const NODE_NAME_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME";
pub(crate) const NAMESPACE_NAME_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES_NAMESPACE_NAME";
pub(crate) const CONTAINER_NAME_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES_CONTAINER_NAME";

const NAMESPACE_FILE: &str = "var/run/secrets/kubernetes.io/serviceaccount/namespace";

pub(crate) fn detect(root: &Path, env: &DetectorEnv) -> Result<Vec<KeyValue>, String> {
    let on_kubernetes = env.kubernetes_service_host.is_some();
    let mut out = Vec::new();
    let mut put = |key: &'static str, value: Option<String>| {
        if let Some(v) = value {
            out.push(KeyValue::new(key, v));
        }
    };
    put(
        "k8s.pod.name",
        env.pod_name
            .clone()
            .or_else(|| env.hostname.clone().filter(|_| on_kubernetes)),
    );
    put("k8s.pod.uid", env.pod_uid.clone());
    put("k8s.node.name", env.node_name.clone());
    let namespace = match env.namespace_name.clone() {
        Some(ns) => Some(ns),
        None if on_kubernetes => read_namespace(root)?,
        None => None,
    };
    put("k8s.namespace.name", namespace);
    put("k8s.container.name", env.container_name.clone());
    Ok(out)
}

fn read_namespace(root: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(root.join(NAMESPACE_FILE)) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|s| !s.is_empty())),
        // A pod without a mounted service-account token (automountServiceAccountToken: false).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read /{NAMESPACE_FILE}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(root: &Path, env: &DetectorEnv) -> Vec<(String, String)> {
        detect(root, env)
            .unwrap()
            .into_iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }

    #[test]
    fn hostname_is_not_a_pod_name_off_kubernetes() {
        let env = DetectorEnv {
            hostname: Some("dev-laptop".into()),
            ..DetectorEnv::default()
        };
        assert!(found(Path::new("/nonexistent"), &env).is_empty());
    }

    #[test]
    fn a_pod_with_downward_api_variables_and_the_namespace_file() {
        let root = std::env::temp_dir().join(format!("st-k8s-{}", std::process::id()));
        let file = root.join(NAMESPACE_FILE);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "shop\n").unwrap();
        let env = DetectorEnv {
            kubernetes_service_host: Some("127.0.0.1".into()),
            hostname: Some("checkout-7d9f-x2".into()),
            pod_uid: Some("2c48913c-b29f-11e7-9350-020968147796".into()),
            node_name: Some("node-a".into()),
            container_name: Some("app".into()),
            ..DetectorEnv::default()
        };
        assert_eq!(
            found(&root, &env),
            [
                ("k8s.pod.name", "checkout-7d9f-x2"),
                ("k8s.pod.uid", "2c48913c-b29f-11e7-9350-020968147796"),
                ("k8s.node.name", "node-a"),
                ("k8s.namespace.name", "shop"),
                ("k8s.container.name", "app"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        // The downward-API variables win over HOSTNAME and the file.
        let explicit = DetectorEnv {
            pod_name: Some("from-downward-api".into()),
            namespace_name: Some("payments".into()),
            ..env
        };
        let attrs = found(&root, &explicit);
        assert!(attrs.contains(&("k8s.pod.name".into(), "from-downward-api".into())));
        assert!(attrs.contains(&("k8s.namespace.name".into(), "payments".into())));
        let _ = std::fs::remove_dir_all(&root);
    }
}
