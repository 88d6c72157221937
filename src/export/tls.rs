//! TLS for `https` endpoints: the PEM files of [`TlsFiles`] are read and checked once, then
//! handed to tonic (gRPC) or to the blocking reqwest client (HTTP).
//!
//! Neither transport checks enough by itself: a "CA" file with no PEM block parses to zero
//! certificates without an error, and every export would then fail its handshake. Here such a
//! file is a build error, reported as one warning, and the signal falls back to no-op. Error
//! texts name files, never their contents (a key is a secret).

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{SignalConfig, TlsFiles};

/// Checked PEM bytes for one signal's exporter.
#[derive(Clone, Default)]
pub(crate) struct TlsMaterial {
    /// Trusted CAs replacing the system roots; `None` uses the system roots.
    pub(crate) ca: Option<Vec<u8>>,
    /// Client certificate chain and key.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The TLS material for `config`'s endpoint: `None` for plaintext.
pub(crate) fn for_endpoint(config: &SignalConfig) -> Result<Option<TlsMaterial>, String> {
    if !config.endpoint.starts_with("https://") {
        return Ok(None);
    }
    load(&config.tls).map(Some)
}

fn load(files: &TlsFiles) -> Result<TlsMaterial, String> {
    let mut material = TlsMaterial::default();
    if let Some(path) = &files.certificate {
        let pem = read(path, "CA certificate")?;
        certificates(&pem, path, "CA certificate")?;
        material.ca = Some(pem);
    }
    if let (Some(cert_path), Some(key_path)) = (&files.client_certificate, &files.client_key) {
        let cert = read(cert_path, "client certificate")?;
        certificates(&cert, cert_path, "client certificate")?;
        let key = read(key_path, "client key")?;
        PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
            format!(
                "the client key file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                key_path.display()
            )
        })?;
        material.identity = Some((cert, key));
    }
    Ok(material)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))
}

fn certificates(pem: &[u8], path: &Path, what: &str) -> Result<(), String> {
    let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match parsed {
        Ok(certs) if !certs.is_empty() => Ok(()),
        Ok(_) => Err(format!(
            "the {what} file {} holds no PEM CERTIFICATE block",
            path.display()
        )),
        Err(_) => Err(format!(
            "the {what} file {} is not valid PEM",
            path.display()
        )),
    }
}

/// tonic's TLS settings: the configured CA, else the system roots (tonic's default is an
/// empty root store that trusts nothing), and the client identity.
#[cfg(feature = "grpc")]
pub(crate) fn tonic_config(
    material: &TlsMaterial,
) -> opentelemetry_otlp::tonic_types::transport::ClientTlsConfig {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new();
    tls = match &material.ca {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
        None => tls.with_native_roots(),
    };
    if let Some((cert, key)) = &material.identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    tls
}

/// The blocking client for OTLP/HTTP, built on a thread of its own (reqwest's blocking builder
/// panics inside an async runtime). Plaintext endpoints get a client that never loads the
/// system roots, so a container image without CA certificates can still export over `http`.
#[cfg(feature = "http")]
pub(crate) fn blocking_client(
    material: Option<TlsMaterial>,
    timeout: std::time::Duration,
) -> Result<reqwest::blocking::Client, String> {
    let build = move || -> Result<reqwest::blocking::Client, String> {
        let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
        match material {
            None => builder = builder.tls_certs_only(std::iter::empty()),
            Some(material) => {
                if let Some(ca) = &material.ca {
                    let certs = reqwest::Certificate::from_pem_bundle(ca)
                        .map_err(|e| format!("invalid CA certificate: {e}"))?;
                    builder = builder.tls_certs_only(certs);
                }
                if let Some((cert, key)) = &material.identity {
                    // reqwest wants the key and the chain in one buffer.
                    let mut pem = cert.clone();
                    pem.push(b'\n');
                    pem.extend_from_slice(key);
                    let identity = reqwest::Identity::from_pem(&pem)
                        .map_err(|e| format!("invalid client certificate or key: {e}"))?;
                    builder = builder.identity(identity);
                }
            }
        }
        builder
            .build()
            .map_err(|e| format!("cannot build the OTLP/HTTP client: {e}"))
    };
    super::otlp::off_runtime(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, content: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("st-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write temp file");
        path
    }

    #[test]
    fn unreadable_or_blockless_or_keyless_files_are_errors_naming_the_file_not_its_content() {
        let missing = TlsFiles {
            certificate: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let e = load(&missing).err().expect("missing file");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");

        let garbage = temp_file("garbage.pem", b"not a certificate at all");
        let e = load(&TlsFiles {
            certificate: Some(garbage.clone()),
            ..TlsFiles::default()
        })
        .err()
        .expect("garbage CA");
        assert!(e.contains("no PEM CERTIFICATE block"), "{e}");

        let secret_key = temp_file("key.pem", b"SECRET-KEY-MATERIAL");
        let e = load(&TlsFiles {
            certificate: None,
            client_certificate: Some(garbage.clone()),
            client_key: Some(secret_key),
        })
        .err()
        .expect("bad client pair");
        assert!(!e.contains("SECRET"), "{e}");
        assert!(!e.contains("not a certificate"), "{e}");
    }
}
