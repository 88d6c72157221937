//! A child process watched line by line: readiness is a log line, not a sleep.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use rustix::process::Signal;

pub struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

/// Variables the crate reads; a child gets only the ones a test gives it.
fn scrub(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("OTEL_")
            || key.starts_with("SHUTDOWN_")
            || key.starts_with("ECS_CONTAINER_METADATA_URI")
            || ["LOG_LEVEL", "RUST_LOG", "PORT", "KUBERNETES_SERVICE_HOST"].contains(&key.as_ref())
        {
            cmd.env_remove(key.as_ref());
        }
    }
}

impl Running {
    pub fn spawn(cmd: Command, env: &[(&str, &str)]) -> Running {
        Running::spawn_keeping(cmd, env, |_| true)
    }

    /// Like [`spawn`](Self::spawn), but only stdout lines for which `keep` holds are kept: a
    /// child under sustained load logs more than a test should hold in memory.
    pub fn spawn_keeping(
        mut cmd: Command,
        env: &[(&str, &str)],
        keep: fn(&str) -> bool,
    ) -> Running {
        scrub(&mut cmd);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !keep(&line) {
                    continue;
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Runs the ignored test `name` of the current test binary as the child.
    pub fn probe(name: &str, env: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        Running::spawn(cmd, env)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn signal(&self, signal: Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, signal).expect("send signal");
    }

    fn take(&mut self, line: String) {
        self.seen.push(line);
    }

    /// Every JSON line so far (libtest's own lines are skipped).
    pub fn json(&self) -> Vec<Value> {
        self.seen.iter().filter_map(|l| parse(l)).collect()
    }

    pub fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.seen.join("\n"),
            self.stderr.lock().unwrap()
        )
    }

    /// Reads lines until a JSON line satisfies `pred`; panics with the output on timeout.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(found) = self.json().into_iter().find(|v| pred(v)) {
            return found;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let parsed = parse(&line);
                    self.take(line);
                    if let Some(v) = parsed.filter(|v| pred(v)) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line {what} within {timeout:?}\n{}", self.output())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the child's stdout closed before {what}\n{}", self.output())
                }
            }
        }
    }

    /// Waits for a stdout line, JSON or not, for which `pred` holds.
    #[allow(dead_code)]
    pub fn wait_for_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        if let Some(found) = self.seen.iter().find(|l| pred(l)) {
            return found.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = pred(&line);
                    self.take(line.clone());
                    if hit {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line {what} within {timeout:?}\n{}", self.output())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the child's stdout closed before {what}\n{}", self.output())
                }
            }
        }
    }

    /// Every stdout line so far, as written.
    #[allow(dead_code)]
    pub fn raw_lines(&self) -> &[String] {
        &self.seen
    }

    /// Waits for the examples' `listening` line and returns the port in its `address`.
    pub fn wait_for_listening_port(&mut self, timeout: Duration) -> u16 {
        let listening = self.wait_for_message("listening", timeout);
        listening["address"]
            .as_str()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in the listening line {listening}"))
    }

    pub fn wait_for_message(&mut self, prefix: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("starting {prefix:?}"), timeout, |v| {
            v["message"].as_str().is_some_and(|m| m.starts_with(prefix))
        })
    }

    /// Waits for the exit and the end of its output; kills it and panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.drain();
                panic!(
                    "child still running after {timeout:?}; killed\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.drain();
        status
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.take(line);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(line: &str) -> Option<Value> {
    // libtest prints "test NAME ... " without a newline before the child's first line.
    let start = line.find('{')?;
    serde_json::from_str(&line[start..]).ok()
}

/// An example's binary, brought up to date first: `cargo test --test NAME` does not build
/// examples, and a stale one would test old code. (A no-op when `cargo test` just built it.)
/// Built with the features this test binary was built with, so nothing is rebuilt; the list
/// only matters for examples that require features.
pub fn example_binary(name: &str) -> PathBuf {
    let features: Vec<&str> = [
        ("grpc", cfg!(feature = "grpc")),
        ("http", cfg!(feature = "http")),
        ("tls", cfg!(feature = "tls")),
        ("prometheus", cfg!(feature = "prometheus")),
        ("tower", cfg!(feature = "tower")),
        ("axum", cfg!(feature = "axum")),
        ("tonic", cfg!(feature = "tonic")),
        ("reqwest", cfg!(feature = "reqwest")),
        ("sqlx", cfg!(feature = "sqlx")),
        ("redis", cfg!(feature = "redis")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let exe = std::env::current_exe().expect("test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    // One build at a time: parallel tests would otherwise queue on cargo's lock anyway.
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--no-default-features",
        "--example",
        name,
    ]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let status = cmd.status().expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    path
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_request(port, "GET", path, None)
}

/// A plain HTTP/1.1 POST of a JSON body; returns the status code and the body.
pub fn http_post_json(port: u16, path: &str, body: &str) -> (u16, String) {
    http_request(port, "POST", path, Some(body))
}

fn http_request(port: u16, method: &str, path: &str, json_body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(body) = json_body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes()).expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// An HTTP/1.1 client on one kept-alive connection, so a request's latency is the server's
/// work plus a loopback round trip, not a TCP handshake.
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeepAlive {
    pub fn connect(port: u16) -> KeepAlive {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        KeepAlive {
            reader: BufReader::new(stream.try_clone().expect("clone stream")),
            writer: stream,
        }
    }

    /// Sends one GET and reads the whole response; returns the status code.
    pub fn get(&mut self, path: &str) -> u16 {
        write!(
            self.writer,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .expect("write request");
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {status_line:?}"));
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            self.reader.read_line(&mut header).expect("header");
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("content-length");
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).expect("body");
        status
    }
}
