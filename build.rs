//! Records the compiler's version for the `process.runtime.*` resource attributes: a Rust
//! program has no runtime to ask at run time, and the compiler that built this crate is the
//! one that built the service.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RUSTC");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let description = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    println!("cargo:rustc-env=SERVICE_TELEMETRY_RUSTC_DESCRIPTION={description}");
}
