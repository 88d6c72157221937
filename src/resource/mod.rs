//! The OpenTelemetry resource: who is speaking.
//!
//! Precedence, highest first: `OTEL_SERVICE_NAME` (for `service.name`), `OTEL_RESOURCE_ATTRIBUTES`,
//! attributes set in code ([`crate::TelemetryBuilder::resource_attribute`]), the detectors (a
//! later detector over an earlier one: ECS's `container.id` over the cgroup's), then the derived
//! `service.instance.id`, then `telemetry.sdk.*`.

mod container;
mod detect;
mod ecs;
mod host;
mod k8s;

use opentelemetry::{Key, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{ResourceDetector as _, TelemetryResourceDetector};

use crate::config::Config;

pub(crate) use detect::{DETECTION_BUDGET, Detection, DetectionInput, DetectorEnv, detect};
pub(crate) use host::{process_start_time, stat_field};

/// Builds the resource from the resolved config and what the detectors found (not from the
/// SDK's environment detector, which does not percent-decode `OTEL_RESOURCE_ATTRIBUTES`).
pub(crate) fn build(
    config: &Config,
    code_attributes: &[(String, String)],
    detection: &Detection,
) -> Resource {
    let mut attributes: Vec<KeyValue> = TelemetryResourceDetector
        .detect()
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attributes.extend(detection.attributes.iter().cloned());
    attributes.extend(
        code_attributes
            .iter()
            .chain(config.resource_attributes.iter())
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    if let Some(version) = &config.service_version {
        attributes.push(KeyValue::new("service.version", version.clone()));
    }
    if !attributes
        .iter()
        .any(|kv| kv.key.as_str() == "service.instance.id")
    {
        attributes.push(KeyValue::new(
            "service.instance.id",
            derived_instance_id(&attributes),
        ));
    }
    Resource::builder_empty()
        .with_attributes(attributes)
        .with_service_name(config.service_name.clone())
        .build()
}

/// The last value given for `key`, as text.
fn last_string(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .rev()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
        .filter(|v| !v.is_empty())
}

/// `service.instance.id` when nothing sets it. On Kubernetes, with the namespace, pod and
/// container known, the semantic conventions' recipe (non-normative k8s-attributes.md,
/// "service.instance.id"): the three joined with `.`, stable across restarts of the container.
/// Anywhere else a random UUID v4 per process (service.md: "SHOULD be a random UUID v1 or v4").
fn derived_instance_id(attributes: &[KeyValue]) -> String {
    let part = |key: &str| last_string(attributes, key);
    match (
        part("k8s.namespace.name"),
        part("k8s.pod.name"),
        part("k8s.container.name"),
    ) {
        (Some(namespace), Some(pod), Some(container)) => format!("{namespace}.{pod}.{container}"),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// The value of `key` in `resource` as text, for the startup line.
pub(crate) fn text(resource: &Resource, key: &'static str) -> Option<String> {
    resource
        .get(&Key::from_static_str(key))
        .map(|v| match v {
            Value::String(s) => s.to_string(),
            other => other.to_string(),
        })
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(
        env: &[(&str, &str)],
        code: &[(&str, &str)],
        detected: &[(&str, &str)],
    ) -> Resource {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let (config, _) =
            Config::from_lookup(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
        let code: Vec<(String, String)> = code
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let detection = Detection {
            attributes: detected
                .iter()
                .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string()))
                .collect(),
            ..Detection::default()
        };
        build(&config, &code, &detection)
    }

    #[test]
    fn instance_id_is_a_fresh_uuid_v4_by_default() {
        let a = text(&resource(&[], &[], &[]), "service.instance.id").unwrap();
        let b = text(&resource(&[], &[], &[]), "service.instance.id").unwrap();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
    }

    #[test]
    fn instance_id_on_kubernetes_joins_namespace_pod_and_container() {
        let r = resource(
            &[("OTEL_RESOURCE_ATTRIBUTES", "k8s.container.name=app")],
            &[],
            &[
                ("k8s.namespace.name", "shop"),
                ("k8s.pod.name", "checkout-7d9f-x2"),
            ],
        );
        assert_eq!(
            text(&r, "service.instance.id").as_deref(),
            Some("shop.checkout-7d9f-x2.app")
        );
        let partial = resource(&[], &[], &[("k8s.namespace.name", "shop")]);
        assert!(uuid::Uuid::parse_str(&text(&partial, "service.instance.id").unwrap()).is_ok());
    }

    #[test]
    fn environment_beats_code_beats_detectors() {
        let r = resource(
            &[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.instance.id=from-env,host.name=env-host",
            )],
            &[
                ("service.instance.id", "from-code"),
                ("host.name", "code-host"),
                ("team", "payments"),
            ],
            &[("host.name", "detected-host"), ("host.arch", "amd64")],
        );
        assert_eq!(text(&r, "service.instance.id").as_deref(), Some("from-env"));
        assert_eq!(text(&r, "host.name").as_deref(), Some("env-host"));
        assert_eq!(text(&r, "team").as_deref(), Some("payments"));
        assert_eq!(text(&r, "host.arch").as_deref(), Some("amd64"));
        let code = resource(&[], &[("service.instance.id", "from-code")], &[]);
        assert_eq!(
            text(&code, "service.instance.id").as_deref(),
            Some("from-code")
        );
        assert_eq!(
            text(&code, "telemetry.sdk.language").as_deref(),
            Some("rust")
        );
    }
}
