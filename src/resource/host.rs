//! Host, OS and process attributes (semantic conventions v1.44.0, registry `host`, `os`,
//! `process`). Never `process.command`, `process.command_args` or `process.command_line`:
//! command lines carry secrets, and the conventions make them opt-in for that reason.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;

/// `host.name` (uname's node name, what `hostname` prints), `host.arch` in the conventions'
/// spelling, `host.id` from the machine id where there is one.
pub(crate) fn host(root: &Path) -> Vec<KeyValue> {
    let mut out = Vec::new();
    let uname = rustix::system::uname();
    let node = uname.nodename().to_string_lossy();
    if !node.is_empty() {
        out.push(KeyValue::new("host.name", node.into_owned()));
    }
    out.push(KeyValue::new(
        "host.arch",
        host_arch(std::env::consts::ARCH),
    ));
    // host.id, Linux: /etc/machine-id, else /var/lib/dbus/machine-id (registry host.id note).
    for file in ["etc/machine-id", "var/lib/dbus/machine-id"] {
        if let Ok(id) = std::fs::read_to_string(root.join(file)) {
            let id = id.trim();
            if !id.is_empty() {
                out.push(KeyValue::new("host.id", id.to_owned()));
                break;
            }
        }
    }
    out
}

/// Rust's architecture names mapped to the `host.arch` enum; others are passed through.
pub(crate) fn host_arch(rust_arch: &str) -> String {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm32",
        "x86" => "x86",
        "powerpc" => "ppc32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
    .to_owned()
}

/// Rust's OS names mapped to the `os.type` enum.
pub(crate) fn os_type(rust_os: &str) -> String {
    match rust_os {
        "macos" | "ios" => "darwin",
        "dragonfly" => "dragonflybsd",
        "illumos" => "solaris",
        other => other,
    }
    .to_owned()
}

/// `os.type` and `os.description`: `PRETTY_NAME` of os-release where it exists (one small file),
/// else the kernel's name and release.
pub(crate) fn os(root: &Path) -> Vec<KeyValue> {
    let mut out = vec![KeyValue::new("os.type", os_type(std::env::consts::OS))];
    let pretty = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|f| std::fs::read_to_string(root.join(f)).ok())
        .and_then(|text| pretty_name(&text));
    let description = pretty.unwrap_or_else(|| {
        let uname = rustix::system::uname();
        format!(
            "{} {}",
            uname.sysname().to_string_lossy(),
            uname.release().to_string_lossy()
        )
    });
    if !description.trim().is_empty() {
        out.push(KeyValue::new("os.description", description));
    }
    out
}

fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.trim().strip_prefix("PRETTY_NAME=")?;
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// `process.pid`, `process.executable.name`, `process.creation.time` (Linux), and
/// `process.runtime.*`. The conventions give no runtime guidance for Rust; like
/// opentelemetry-resource-detectors the runtime is the compiler that built the service,
/// recorded at build time (`rustc`, its version, `rustc -V`).
pub(crate) fn process(root: &Path) -> Vec<KeyValue> {
    let mut out = vec![KeyValue::new("process.pid", i64::from(std::process::id()))];
    if let Some(name) = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
    {
        out.push(KeyValue::new("process.executable.name", name));
    }
    if let Some(created) = process_start_time(root) {
        let mut text = String::with_capacity(27);
        crate::logs::write_timestamp(&mut text, created);
        out.push(KeyValue::new("process.creation.time", text));
    }
    let description = env!("SERVICE_TELEMETRY_RUSTC_DESCRIPTION");
    if let Some(version) = description.split_whitespace().nth(1) {
        out.push(KeyValue::new("process.runtime.name", "rustc"));
        out.push(KeyValue::new("process.runtime.version", version.to_owned()));
        out.push(KeyValue::new("process.runtime.description", description));
    }
    out
}

/// When this process started (Linux: boot time plus the start tick of `/proc/self/stat`).
pub(crate) fn process_start_time(root: &Path) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(root.join("proc/self/stat")).ok()?;
    let start_ticks = stat_field(&stat, 22)?;
    let boot = std::fs::read_to_string(root.join("proc/stat")).ok()?;
    let boot_secs: u64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let after_boot = Duration::from_secs(start_ticks / ticks)
        + Duration::from_nanos((start_ticks % ticks) * 1_000_000_000 / ticks);
    UNIX_EPOCH.checked_add(Duration::from_secs(boot_secs) + after_boot)
}

/// Field `n` (1-based, as in proc(5)) of `/proc/<pid>/stat`, read after the command name,
/// which is in parentheses and may itself contain spaces and parentheses.
pub(crate) fn stat_field(stat: &str, n: usize) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields 1 and 2 (pid, comm) come before the closing parenthesis.
    after_name
        .split_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_and_systems_use_the_conventions_names() {
        assert_eq!(host_arch("x86_64"), "amd64");
        assert_eq!(host_arch("aarch64"), "arm64");
        assert_eq!(host_arch("riscv64"), "riscv64");
        assert_eq!(os_type("linux"), "linux");
        assert_eq!(os_type("macos"), "darwin");
    }

    #[test]
    fn stat_fields_are_counted_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (my (weird) svc) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 123456 1000 200";
        assert_eq!(stat_field(stat, 4), Some(1));
        assert_eq!(stat_field(stat, 14), Some(250));
        assert_eq!(stat_field(stat, 15), Some(75));
        assert_eq!(stat_field(stat, 20), Some(9));
        assert_eq!(stat_field(stat, 22), Some(123456));
        assert_eq!(stat_field("garbage", 14), None);
    }

    #[test]
    fn os_release_pretty_name_is_unquoted() {
        assert_eq!(
            pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(pretty_name("NAME=x\n"), None);
    }

    #[test]
    fn the_real_process_has_no_command_line_attribute() {
        let attrs = process(Path::new("/"));
        let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
        assert!(keys.contains(&"process.pid"));
        assert!(keys.contains(&"process.executable.name"));
        assert!(
            !keys.iter().any(|k| k.starts_with("process.command")),
            "{keys:?}"
        );
        if cfg!(target_os = "linux") {
            let created = process_start_time(Path::new("/")).expect("start time on Linux");
            let age = SystemTime::now()
                .duration_since(created)
                .expect("in the past");
            assert!(age < Duration::from_secs(24 * 3600), "{age:?}");
        }
    }
}
