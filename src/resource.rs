//! The OpenTelemetry resource describing this service.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{ResourceDetector, TelemetryResourceDetector};

use crate::config::Config;

/// Builds the resource from the resolved config only (not from the SDK's environment
/// detector, which does not percent-decode `OTEL_RESOURCE_ATTRIBUTES`).
pub(crate) fn build(config: &Config) -> Resource {
    let detectors: [Box<dyn ResourceDetector>; 1] = [Box::new(TelemetryResourceDetector)];
    let mut attributes: Vec<KeyValue> = config
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    if let Some(version) = &config.service_version {
        attributes.push(KeyValue::new("service.version", version.clone()));
    }
    Resource::builder_empty()
        .with_detectors(&detectors)
        .with_attributes(attributes)
        .with_service_name(config.service_name.clone())
        .build()
}
