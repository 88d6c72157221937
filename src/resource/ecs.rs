//! Amazon ECS: the container and task documents of the task metadata endpoint v4.
//!
//! opentelemetry-aws 0.21 has an ECS detector, but it blocks the calling thread on ureq with a
//! 1 s timeout per request (two requests, plus three to the EC2 instance metadata service on
//! the EC2 launch type), so a metadata endpoint that accepts and never answers costs seconds of
//! startup. Here both documents are fetched at once with hyper on a runtime of this thread's
//! own, under one deadline shared with the other detectors.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry::{Array, KeyValue, StringValue, Value};
use serde_json::Value as Json;

pub(crate) const METADATA_URI_VAR: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// Largest document accepted; a task document with dozens of containers is tens of KiB.
const MAX_DOCUMENT: usize = 1 << 20;

pub(crate) fn detect(uri: &str, deadline: Instant) -> Result<Vec<KeyValue>, String> {
    let base: http::Uri = uri
        .parse()
        .map_err(|e| format!("{METADATA_URI_VAR}={uri:?} is not a URL: {e}"))?;
    if base.scheme_str() != Some("http") || base.host().is_none() {
        return Err(format!("{METADATA_URI_VAR}={uri:?} is not an http:// URL"));
    }
    let task: http::Uri = format!("{}/task", uri.trim_end_matches('/'))
        .parse()
        .map_err(|e| format!("task document URL: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("could not start a runtime for the metadata requests: {e}"))?;
    let timeout = deadline.saturating_duration_since(Instant::now());
    let (container, task) = runtime
        .block_on(async {
            tokio::time::timeout(timeout, async {
                tokio::join!(get_json(&base), get_json(&task))
            })
            .await
        })
        .map_err(|_| {
            format!(
                "the metadata endpoint {uri} did not answer within {} ms",
                timeout.as_millis()
            )
        })?;
    let container = container.map_err(|e| format!("container metadata from {uri}: {e}"))?;
    let task = task.map_err(|e| format!("task metadata from {uri}/task: {e}"))?;
    Ok(attributes(&container, &task))
}

async fn get_json(uri: &http::Uri) -> Result<Json, String> {
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(|c| c == '[' || c == ']');
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

fn text<'a>(doc: &'a Json, key: &str) -> Option<&'a str> {
    doc.get(key)
        .and_then(Json::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn string_array(value: String) -> Value {
    Value::Array(Array::String(vec![StringValue::from(value)]))
}

/// The attributes of the semantic conventions' `aws.ecs.*`, `aws.log.*` and `cloud.*`
/// registries (v1.44.0). Region and account come from the task ARN
/// (`arn:aws:ecs:<region>:<account>:task/<cluster>/<id>`), as in the collector's ECS detector.
pub(crate) fn attributes(container: &Json, task: &Json) -> Vec<KeyValue> {
    let mut out = vec![
        KeyValue::new("cloud.provider", "aws"),
        KeyValue::new("cloud.platform", "aws_ecs"),
    ];
    let task_arn = text(task, "TaskARN");
    let arn_parts: Vec<&str> = task_arn.map(|a| a.split(':').collect()).unwrap_or_default();
    let region = arn_parts.get(3).copied().filter(|s| !s.is_empty());
    let account = arn_parts.get(4).copied().filter(|s| !s.is_empty());
    if let Some(region) = region {
        out.push(KeyValue::new("cloud.region", region.to_owned()));
    }
    if let Some(account) = account {
        out.push(KeyValue::new("cloud.account.id", account.to_owned()));
    }
    if let Some(zone) = text(task, "AvailabilityZone") {
        out.push(KeyValue::new("cloud.availability_zone", zone.to_owned()));
    }
    if let Some(arn) = task_arn {
        out.push(KeyValue::new("aws.ecs.task.arn", arn.to_owned()));
        if let Some(id) = arn
            .rsplit('/')
            .next()
            .filter(|id| !id.is_empty() && *id != arn)
        {
            out.push(KeyValue::new("aws.ecs.task.id", id.to_owned()));
        }
    }
    if let Some(family) = text(task, "Family") {
        out.push(KeyValue::new("aws.ecs.task.family", family.to_owned()));
    }
    if let Some(revision) = text(task, "Revision") {
        out.push(KeyValue::new("aws.ecs.task.revision", revision.to_owned()));
    }
    if let Some(cluster) = text(task, "Cluster") {
        // The agent gives a short name on some versions and an ARN on others.
        let arn = if cluster.starts_with("arn:") {
            Some(cluster.to_owned())
        } else {
            region
                .zip(account)
                .map(|(r, a)| format!("arn:aws:ecs:{r}:{a}:cluster/{cluster}"))
        };
        if let Some(arn) = arn {
            out.push(KeyValue::new("aws.ecs.cluster.arn", arn));
        }
    }
    if let Some(launch) = text(task, "LaunchType") {
        out.push(KeyValue::new(
            "aws.ecs.launchtype",
            launch.to_ascii_lowercase(),
        ));
    }
    if let Some(arn) = text(container, "ContainerARN") {
        out.push(KeyValue::new("aws.ecs.container.arn", arn.to_owned()));
    }
    if let Some(id) = text(container, "DockerId") {
        out.push(KeyValue::new("container.id", id.to_owned()));
    }
    if let Some(name) = text(container, "Name") {
        out.push(KeyValue::new("container.name", name.to_owned()));
    }
    if text(container, "LogDriver") == Some("awslogs") {
        let options = container.get("LogOptions").cloned().unwrap_or(Json::Null);
        let group = text(&options, "awslogs-group");
        let stream = text(&options, "awslogs-stream");
        let log_region = text(&options, "awslogs-region").or(region);
        if let Some(group) = group {
            out.push(KeyValue::new(
                "aws.log.group.names",
                string_array(group.to_owned()),
            ));
        }
        if let Some(stream) = stream {
            out.push(KeyValue::new(
                "aws.log.stream.names",
                string_array(stream.to_owned()),
            ));
        }
        if let (Some(group), Some(r), Some(a)) = (group, log_region, account) {
            let group_arn = format!("arn:aws:logs:{r}:{a}:log-group:{group}");
            if let Some(stream) = stream {
                out.push(KeyValue::new(
                    "aws.log.stream.arns",
                    string_array(format!("{group_arn}:log-stream:{stream}")),
                ));
            }
            out.push(KeyValue::new("aws.log.group.arns", string_array(group_arn)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fargate_task_without_awslogs_and_with_a_cluster_arn() {
        let container =
            serde_json::json!({"DockerId": "c0ffee", "Name": "web", "LogDriver": "json-file"});
        let task = serde_json::json!({
            "Cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
            "TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/prod/0123abcd",
            "Family": "web", "Revision": "3", "LaunchType": "FARGATE"
        });
        let attrs = attributes(&container, &task);
        let get = |k: &str| {
            attrs
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(
            get("aws.ecs.cluster.arn").as_deref(),
            Some("arn:aws:ecs:eu-west-1:123456789012:cluster/prod")
        );
        assert_eq!(get("aws.ecs.launchtype").as_deref(), Some("fargate"));
        assert_eq!(get("aws.ecs.task.id").as_deref(), Some("0123abcd"));
        assert_eq!(get("cloud.availability_zone"), None);
        assert_eq!(get("aws.log.group.names"), None);
    }

    #[test]
    fn bad_uris_fail_without_a_request() {
        let soon = Instant::now() + std::time::Duration::from_millis(100);
        assert!(detect("not a url", soon).unwrap_err().contains("not"));
        assert!(
            detect("https://127.0.0.1/v4/x", soon)
                .unwrap_err()
                .contains("http://")
        );
    }
}
