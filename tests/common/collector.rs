//! A real OpenTelemetry collector (rotel) on loopback, and a parser for its debug dump.
//!
//! The agent is installed by `scripts/install-test-collector.sh`; `ROTEL_BIN` overrides the
//! path. Each `Collector` gets its own ports and its own dump file.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

pub struct Collector {
    child: Child,
    pub grpc_port: u16,
    pub http_port: u16,
    dump: PathBuf,
}

fn agent_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ROTEL_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/rotel-venv/lib/python3.11/site-packages/rotel/rotel-agent")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn wait_for_port(port: u16, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

impl Collector {
    pub fn start() -> Collector {
        for _attempt in 0..5 {
            // Most likely a port was taken between choosing and binding: try other ports.
            if let Some(c) = Collector::try_start_on(free_port(), free_port()) {
                return c;
            }
        }
        panic!("the test collector did not start");
    }

    /// A collector on the given ports, for a service configured before it came up.
    #[allow(dead_code)]
    pub fn start_on(grpc_port: u16, http_port: u16) -> Collector {
        Collector::try_start_on(grpc_port, http_port).unwrap_or_else(|| {
            panic!("the test collector did not start on {grpc_port}/{http_port}")
        })
    }

    /// Kills the collector, as a crash would.
    #[allow(dead_code)]
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same ports, with a fresh dump.
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        self.kill();
        *self = Collector::start_on(self.grpc_port, self.http_port);
    }

    fn try_start_on(grpc_port: u16, http_port: u16) -> Option<Collector> {
        let agent = agent_path();
        assert!(
            agent.exists(),
            "test collector not installed at {}: run scripts/install-test-collector.sh (scripts/test.sh does)",
            agent.display()
        );
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dump = dir.join(format!(
            "rotel-{grpc_port}-{http_port}-{}-{n}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&dump).expect("create collector dump file");
        let mut child = Command::new(&agent)
            .args([
                "start",
                "--exporter",
                "blackhole",
                "--debug-log-verbosity",
                "detailed",
            ])
            .args([
                "--debug-log",
                "traces",
                "--debug-log",
                "metrics",
                "--debug-log",
                "logs",
            ])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .env("ROTEL_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup dump file"))
            .stderr(out)
            .spawn()
            .expect("spawn rotel-agent");
        let deadline = Instant::now() + Duration::from_secs(15);
        if wait_for_port(grpc_port, deadline) && wait_for_port(http_port, deadline) {
            return Some(Collector {
                child,
                grpc_port,
                http_port,
                dump,
            });
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn raw(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.dump) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    pub fn records(&self) -> Vec<Value> {
        parse_dump(&self.raw())
    }

    /// Polls the dump until `pred` holds for some record; panics with the dump on timeout.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.records().into_iter().find(|r| pred(r)) {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "collector never received {what} within {timeout:?}; records:\n{:#?}",
                    self.records()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Str(x)` -> "x", `Int(7)` -> 7, `Double(1.5)` -> 1.5, `Bool(true)` -> true, else the text.
fn parse_value(raw: &str) -> Value {
    let inner = |prefix: &str| raw.strip_prefix(prefix).and_then(|r| r.strip_suffix(')'));
    if let Some(s) = inner("Str(") {
        return json!(s);
    }
    if let Some(n) = inner("Int(").and_then(|n| n.parse::<i64>().ok()) {
        return json!(n);
    }
    if let Some(n) = inner("Double(").and_then(|n| n.parse::<f64>().ok()) {
        return json!(n);
    }
    if let Some(b) = inner("Bool(").and_then(|b| b.parse::<bool>().ok()) {
        return json!(b);
    }
    json!(raw)
}

#[derive(PartialEq)]
enum Section {
    Resource,
    Item,
    Other,
}

/// Turns rotel's detailed debug dump into one JSON record per span, log record or metric point:
/// `{"signal":"span","service":..,"trace_id":..,"span_id":..,"parent_span_id":..,"name":..,
/// "kind":..,"status":..,"attributes":{..}}`, `{"signal":"log","body":..,"trace_id":..,..}`,
/// `{"signal":"metric","name":..,"type":..,"value"|"count"|"sum":..,"attributes":{..}}`.
pub fn parse_dump(text: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut resource = Map::new();
    let mut current: Option<Map<String, Value>> = None;
    let mut section = Section::Other;
    let (mut metric_name, mut metric_type) = (String::new(), String::new());
    let (mut metric_unit, mut temporality, mut monotonic) =
        (String::new(), String::new(), String::new());

    let flush = |current: &mut Option<Map<String, Value>>, out: &mut Vec<Value>| {
        if let Some(rec) = current.take() {
            out.push(Value::Object(rec));
        }
    };
    let start = |signal: &str, resource: &Map<String, Value>| {
        let mut rec = Map::new();
        rec.insert("signal".into(), json!(signal));
        rec.insert(
            "service".into(),
            resource.get("service.name").cloned().unwrap_or(Value::Null),
        );
        rec.insert("resource".into(), Value::Object(resource.clone()));
        rec.insert("attributes".into(), json!({}));
        rec
    };

    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("ResourceSpans #")
            || trimmed.starts_with("ResourceMetrics #")
            || trimmed.starts_with("ResourceLog #")
        {
            flush(&mut current, &mut out);
            resource = Map::new();
            section = Section::Other;
            continue;
        }
        if trimmed == "Resource attributes:" {
            section = Section::Resource;
            continue;
        }
        if trimmed.starts_with("Span #") {
            flush(&mut current, &mut out);
            current = Some(start("span", &resource));
            section = Section::Other;
            continue;
        }
        if trimmed.starts_with("LogRecord #") {
            flush(&mut current, &mut out);
            current = Some(start("log", &resource));
            section = Section::Other;
            continue;
        }
        if trimmed.starts_with("Metric #") {
            flush(&mut current, &mut out);
            section = Section::Other;
            continue;
        }
        if trimmed.starts_with("NumberDataPoints #")
            || trimmed.starts_with("HistogramDataPoints #")
            || trimmed.starts_with("ExponentialHistogramDataPoints #")
        {
            flush(&mut current, &mut out);
            let mut rec = start("metric", &resource);
            rec.insert("name".into(), json!(metric_name));
            rec.insert("type".into(), json!(metric_type));
            rec.insert("unit".into(), json!(metric_unit));
            rec.insert("temporality".into(), json!(temporality));
            rec.insert("monotonic".into(), json!(monotonic));
            current = Some(rec);
            section = Section::Other;
            continue;
        }
        if trimmed == "Attributes:" || trimmed == "Data point attributes:" {
            section = Section::Item;
            continue;
        }
        if let Some(kv) = trimmed.strip_prefix("-> ") {
            let Some((k, v)) = kv.split_once(": ") else {
                continue;
            };
            match section {
                Section::Resource => {
                    resource.insert(k.to_owned(), parse_value(v));
                }
                Section::Item => {
                    if let Some(Value::Object(attrs)) =
                        current.as_mut().and_then(|c| c.get_mut("attributes"))
                    {
                        attrs.insert(k.to_owned(), parse_value(v));
                    }
                }
                Section::Other => match k {
                    "Name" => {
                        metric_name = v.to_owned();
                        (metric_unit, temporality, monotonic) =
                            (String::new(), String::new(), String::new());
                    }
                    "DataType" => metric_type = v.to_owned(),
                    "Unit" => metric_unit = v.to_owned(),
                    "AggregationTemporality" => temporality = v.to_owned(),
                    "IsMonotonic" => monotonic = v.to_owned(),
                    _ => {}
                },
            }
            continue;
        }
        if line.starts_with("     -> ") || line.starts_with("-> ") {
            continue;
        }
        // Any other line ends an attribute list.
        if section == Section::Resource && !trimmed.starts_with("->") {
            section = Section::Other;
        }
        let Some(rec) = current.as_mut() else {
            continue;
        };
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let field = match key {
            "Trace ID" => "trace_id",
            "Parent ID" => "parent_span_id",
            "ID" | "Span ID" => "span_id",
            "Name" => "name",
            "Kind" => "kind",
            "Status code" => "status",
            "Status message" => "status_message",
            "Start time" => "start_time",
            "EventName" => "event_name",
            "End time" => "end_time",
            "Body" => {
                rec.insert("body".into(), parse_value(value));
                section = Section::Other;
                continue;
            }
            "SeverityNumber" => {
                let n = value
                    .rsplit_once('(')
                    .and_then(|(_, n)| n.trim_end_matches(')').parse::<i64>().ok());
                rec.insert("severity_number".into(), json!(n));
                section = Section::Other;
                continue;
            }
            "Value" | "Count" | "Sum" => {
                let k = key.to_ascii_lowercase();
                let v = value
                    .parse::<f64>()
                    .map(|f| json!(f))
                    .unwrap_or(json!(value));
                rec.insert(k, v);
                section = Section::Other;
                continue;
            }
            _ => {
                section = Section::Other;
                continue;
            }
        };
        section = Section::Other;
        rec.insert(field.into(), json!(value));
    }
    flush(&mut current, &mut out);
    out
}
