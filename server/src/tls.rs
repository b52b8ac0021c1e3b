//! Direct HTTPS for deployments without a TLS-terminating proxy: the rustls server
//! configuration built from the PEM files named by `tls_cert_path` and `tls_key_path`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Reads the certificate chain and key and builds the server configuration. Errors
/// name the setting and the file, so a bad deployment fails at start, not at the
/// first handshake.
pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<RustlsConfig> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("tls_cert_path: cannot read certificates from {}", cert_path.display()))?;
    if chain.is_empty() {
        anyhow::bail!("tls_cert_path: {} holds no PEM certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("tls_key_path: cannot read a PEM private key from {}", key_path.display()))?;
    // An explicit provider: more than one rustls backend is linked into the workspace,
    // and rustls refuses to guess between them.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("tls_cert_path and tls_key_path do not form a usable certificate and key")?;
    // The server speaks both; without ALPN, clients would fall back to HTTP/1.1 only.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}
