//! A private PKI made by the test (rcgen) and Debian's nginx as a TLS terminator in front of
//! the test collector: TLS + HTTP/2 to gRPC, TLS to OTLP/HTTP, client certificates required.
//!
//! nginx is installed by `scripts/install-test-collector.sh`; `NGINX_BIN` overrides the path.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::collector::{Collector, free_port};

/// PEM files in a directory of their own.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
}

fn scratch_dir(kind: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{kind}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A CA, a server certificate for localhost and 127.0.0.1, and a client certificate.
pub fn make_pki() -> Pki {
    let dir = scratch_dir("pki");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "service-telemetry test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose, file: &str| {
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &issuer).expect("leaf cert");
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).expect("write cert");
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).expect("write key");
    };
    leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    leaf(
        Vec::new(),
        "service-telemetry test client",
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    );
    Pki { dir }
}

fn nginx_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NGINX_BIN") {
        return PathBuf::from(p);
    }
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx not installed: run scripts/install-test-collector.sh (scripts/test.sh does)")
}

/// nginx terminating TLS in front of `collector`.
pub struct TlsTerminator {
    child: Child,
    pub grpc_port: u16,
    pub http_port: u16,
    dir: PathBuf,
}

impl TlsTerminator {
    pub fn start(pki: &Pki, collector: &Collector) -> TlsTerminator {
        let bin = nginx_bin();
        for _attempt in 0..5 {
            let (grpc_port, http_port) = (free_port(), free_port());
            let dir = scratch_dir("nginx");
            std::fs::create_dir_all(dir.join("tmp")).expect("nginx tmp");
            let conf = config(&dir, pki, grpc_port, http_port, collector);
            std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
            let mut child = Command::new(&bin)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let deadline = Instant::now() + Duration::from_secs(10);
            let up = |port| loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            if up(grpc_port) && up(http_port) {
                return TlsTerminator {
                    child,
                    grpc_port,
                    http_port,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "nginx did not start; error.log:\n{}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
        }
        panic!("nginx did not start");
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.http_port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, pki: &Pki, grpc_port: u16, http_port: u16, collector: &Collector) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    ssl_certificate {server_cert};
    ssl_certificate_key {server_key};
    ssl_client_certificate {ca};
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {{
        listen 127.0.0.1:{grpc_port} ssl http2;
        client_max_body_size 0;
        location / {{ grpc_pass grpc://127.0.0.1:{collector_grpc}; }}
    }}
    server {{
        listen 127.0.0.1:{http_port} ssl;
        client_max_body_size 0;
        location / {{
            proxy_pass http://127.0.0.1:{collector_http};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#,
        server_cert = pki.server_cert().display(),
        server_key = pki.server_key().display(),
        ca = pki.ca().display(),
        collector_grpc = collector.grpc_port,
        collector_http = collector.http_port,
    )
}
