//! Test certificates for the TLS tests: a certificate authority of their own (rcgen) that signs server certificates,
//! written as the PEM files `[tls]` reads, and rustls clients that trust only that authority.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData as _,
};
use rustls::pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};

/// A test certificate authority.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its (self-signed) certificate.
    pub(crate) der: CertificateDer<'static>,
}

/// A server certificate and its key.
pub(crate) struct ServerCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) der: CertificateDer<'static>,
    /// Base64 of the SHA-256 of the key's SubjectPublicKeyInfo: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    pub(crate) spki_sha256: String,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, "Podium test CA");
        let der = params.self_signed(&key).expect("CA certificate").der().clone();
        Self { issuer: Issuer::new(params, key), der }
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by this authority.
    pub(crate) fn issue(&self, names: &[&str]) -> ServerCert {
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).expect("server certificate");
        let spki = Sha256::digest(key.subject_public_key_info());
        ServerCert {
            cert_pem: pem("CERTIFICATE", cert.der()),
            key_pem: pem("PRIVATE KEY", &key.serialize_der()),
            der: cert.der().clone(),
            spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki),
        }
    }

    /// A rustls client configuration that trusts this authority only.
    pub(crate) fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("add the test CA");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// DER as PEM.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A directory for one test's certificate files, removed at the end.
pub(crate) struct CertDir {
    dir: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl CertDir {
    /// Writes `server`'s certificate and key as `cert.pem` and `key.pem` in a new directory.
    pub(crate) fn new(name: &str, server: &ServerCert) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("podium-tls-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let this = Self { cert: dir.join("cert.pem"), key: dir.join("key.pem"), dir };
        this.install(server);
        this
    }

    /// Replaces both files as a renewal does: each written beside and renamed over the old one, key first.
    pub(crate) fn install(&self, server: &ServerCert) {
        replace(&self.key, &server.key_pem);
        replace(&self.cert, &server.cert_pem);
    }
}

/// Writes `path` atomically (a new file renamed over it).
pub(crate) fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
