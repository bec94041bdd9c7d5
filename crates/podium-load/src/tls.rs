//! TLS for a `wss://` hub and its `https://` endpoints (`/metrics`, the admin API).
//!
//! The websocket's TLS runs over the same TCP stream the session opened (bound to its loopback source address when
//! there is one), with one rustls [`ClientConfig`](rustls::ClientConfig) built once per run and shared by every
//! session: the system's trust store (rustls-native-certs) plus the certificates of `--ca-file` (a private
//! authority, or a self-signed hub certificate). The server name (SNI and the name checked against the certificate)
//! is the URL's host, a DNS name or an IP address. The HTTP client (reqwest on rustls) gets the same extra
//! authorities, merged with its own platform roots.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The certificates of a PEM file; an error names the file when it cannot be read or holds none.
pub(crate) fn read_pem(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("--ca-file {}: not a readable PEM file", path.display()))?;
    if certs.is_empty() {
        bail!("--ca-file {}: no CERTIFICATE in it", path.display());
    }
    Ok(certs)
}

/// The websocket's TLS configuration: the system's roots, plus `ca_file`'s certificates.
pub(crate) fn client_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (system, _) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in read_pem(path)? {
            roots.add(cert).with_context(|| format!("--ca-file {}: not a usable authority", path.display()))?;
        }
    }
    if roots.is_empty() {
        bail!(
            "no trusted certificate authorities: none in the system's store ({system} usable), and no --ca-file \
             (give the PEM of the authority that signed the hub's certificate)"
        );
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP client (the hub's `/metrics`, the admin API) that also trusts `ca_file`'s certificates.
pub fn http_client(ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("--ca-file {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--ca-file {}: not a PEM file", path.display()))?;
        if certs.is_empty() {
            bail!("--ca-file {}: no CERTIFICATE in it", path.display());
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().context("HTTP client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("podium-load-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("write");
        let e = format!("{:#}", client_config(Some(&path)).expect_err("no certificates"));
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let e = format!("{:#}", http_client(Some(&path)).expect_err("no certificates"));
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let _ = std::fs::remove_file(&path);
        let e = format!("{:#}", client_config(Some(&path)).expect_err("missing"));
        assert!(e.contains("not a readable PEM file"), "{e}");
    }
}
