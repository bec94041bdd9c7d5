//! TLS on the listening socket (`[tls]`): HTTPS and WSS from a certificate chain and key in PEM files, on rustls
//! (with aws-lc-rs, the provider the SFU's DTLS and the webhook client already use) through tokio-rustls.
//!
//! # Design
//!
//! - The accept loop admits a TCP connection before anything else (`server.max_connections`, the per-source limits of
//!   `crate::admission`), so every limit applies before any TLS work is done; then the connection's own task runs the
//!   handshake ([`Tls::accept`]), bounded by `tls.handshake_timeout_ms` from accept to the last handshake message.
//!   HTTP and websockets then run on the [`Stream`] exactly as on plain TCP. A connection refused by admission is
//!   closed without an answer (a plain `429` would mean nothing to a TLS client, and a handshake is the work the
//!   refusal saves).
//! - The certificate comes from a resolver ([`Certs`]) that holds the pair in use behind a lock, read once per
//!   handshake. A reload (SIGHUP through [`TlsHandle::reload`], or a change of either file's contents seen by the
//!   watcher every `tls.reload_interval_ms`, through symlinks: certbot's `live/` links and Kubernetes secret volumes
//!   work) parses both files and swaps the pair for new handshakes; open connections keep the one they were made
//!   with. A pair that does not load (a file half written, a key that does not match the
//!   certificate yet) leaves the previous pair in use; it is logged once per change, and the next check tries again.
//! - A first byte that cannot start a TLS handshake but starts an HTTP request (someone used `http://` or `ws://`)
//!   gets a plain `400` saying to use `https://` or `wss://`, then the connection is closed.
//! - ALPN offers `http/1.1` only: the hub's HTTP is hyper's HTTP/1.1, and websockets need it. TLS 1.2 and 1.3
//!   (rustls's safe defaults); TLS 1.3 session tickets, so a client that reconnects to the same hub resumes.
//!
//! Startup errors name the file and what is wrong with it; nothing here panics.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::TlsConfig;
use crate::metrics::{Handshake, TlsMetrics};

/// The content type of a TLS handshake record: the first byte a TLS client sends.
const HANDSHAKE_RECORD: u8 = 0x16;

/// The body of the answer to a plain HTTP request on the TLS port.
const PLAIN_HTTP_BODY: &str = "This port speaks TLS: use https:// or wss:// instead.\n";

/// A connection's bytes: plain TCP, or TLS over it.
pub(crate) enum Stream {
    Plain(TcpStream),
    /// Boxed: rustls's connection state is large, and a plain connection should not carry its size.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP connection underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The hub's TLS: the acceptor, the certificate in use, and the handshake bound.
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    certs: Arc<Certs>,
    handshake_timeout: Duration,
    reload_interval: Option<Duration>,
    metrics: TlsMetrics,
}

impl Tls {
    /// Loads the configured certificate and key (`None` without `[tls]`); an error names the file at fault.
    pub(crate) fn new(config: &TlsConfig, metrics: TlsMetrics) -> anyhow::Result<Option<Self>> {
        let (Some(cert), Some(key)) = (&config.cert, &config.key) else { return Ok(None) };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let files = Files::read(cert, key)?;
        let pair = files.parse(&provider)?;
        let certs = Arc::new(Certs {
            cert: cert.clone(),
            key: key.clone(),
            provider: Arc::clone(&provider),
            current: RwLock::new(Arc::new(pair)),
            state: Mutex::new(LoadState { loaded: files.digest(), failed: None }),
            metrics: metrics.clone(),
        });
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("tls: the crypto provider offers no safe protocol version")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certs) as Arc<dyn ResolvesServerCert>);
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        server.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().context("tls: starting the session ticketer")?;
        info!(cert = %cert.display(), key = %key.display(), "TLS on: serving https:// and wss://");
        Ok(Some(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            certs,
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
            reload_interval: (config.reload_interval_ms > 0).then(|| Duration::from_millis(config.reload_interval_ms)),
            metrics,
        }))
    }

    /// A handle to reload the certificate on demand.
    pub(crate) fn handle(&self) -> TlsHandle {
        TlsHandle(Arc::clone(&self.certs))
    }

    /// Runs the TLS handshake on an admitted connection; `None` (the connection closed) when it does not complete
    /// within the handshake timeout, fails, or turns out to be plain HTTP (answered `400`).
    pub(crate) async fn accept(&self, stream: TcpStream) -> Option<Stream> {
        let outcome = match tokio::time::timeout(self.handshake_timeout, self.handshake(stream)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Timeout),
        };
        let counted = match outcome {
            Ok(stream) => {
                self.metrics.handshake(Handshake::Ok);
                return Some(Stream::Tls(Box::new(stream)));
            }
            // A connection closed before sending anything (a load balancer's TCP check) is no handshake.
            Err(Failure::Closed) => None,
            Err(Failure::Timeout) => Some(Handshake::Timeout),
            Err(Failure::PlainHttp) => Some(Handshake::PlainHttp),
            Err(Failure::Tls(e)) => {
                debug!(error = %e, "TLS handshake failed");
                Some(Handshake::Error)
            }
        };
        if let Some(outcome) = counted {
            debug!(?outcome, "no TLS connection");
            self.metrics.handshake(outcome);
        }
        None
    }

    async fn handshake(&self, stream: TcpStream) -> Result<tokio_rustls::server::TlsStream<TcpStream>, Failure> {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return Err(Failure::Closed),
            Ok(_) => {}
        }
        if first[0] != HANDSHAKE_RECORD && first[0].is_ascii_uppercase() {
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{PLAIN_HTTP_BODY}",
                PLAIN_HTTP_BODY.len()
            );
            crate::hub::answer_and_close(stream, answer.as_bytes()).await;
            return Err(Failure::PlainHttp);
        }
        self.acceptor.accept(stream).await.map_err(Failure::Tls)
    }

    /// Checks the files for a change every `tls.reload_interval_ms` until `shutdown` (nothing when it is 0).
    pub(crate) fn watcher(&self, mut shutdown: watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
        let certs = Arc::clone(&self.certs);
        let every = self.reload_interval;
        async move {
            let Some(every) = every else { return };
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tick.tick() => {}
                }
                let certs = Arc::clone(&certs);
                match tokio::task::spawn_blocking(move || certs.reload(false)).await {
                    Ok(Reload::Failed { error, new: true }) => {
                        warn!(
                            error = format!("{error:#}"),
                            "the TLS certificate files changed but do not load; the previous certificate stays in use"
                        );
                    }
                    Ok(Reload::Unchanged | Reload::Loaded | Reload::Failed { new: false, .. }) => {}
                    Err(e) => warn!(error = %e, "checking the TLS certificate files failed"),
                }
            }
        }
    }
}

/// Why a connection did not become a TLS stream.
enum Failure {
    Closed,
    Timeout,
    PlainHttp,
    Tls(io::Error),
}

/// Reloads the hub's TLS certificate on demand: what `podium serve` does on SIGHUP.
#[derive(Clone)]
pub struct TlsHandle(Arc<Certs>);

impl TlsHandle {
    /// Reads the certificate and key files again and uses them for new connections (open ones keep theirs). On an
    /// error the previous pair stays in use.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let certs = Arc::clone(&self.0);
        match tokio::task::spawn_blocking(move || certs.reload(true)).await? {
            Reload::Loaded | Reload::Unchanged => Ok(()),
            Reload::Failed { error, .. } => Err(error),
        }
    }
}

/// What a reload did.
enum Reload {
    /// The files did not change since the pair in use was loaded.
    Unchanged,
    /// A new pair is in use.
    Loaded,
    /// The files changed but do not load; `new` unless this same change failed before.
    Failed { error: anyhow::Error, new: bool },
}

/// The certificate in use and where it comes from; the server config's certificate resolver.
struct Certs {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Held during a reload, so two reloads never interleave.
    state: Mutex<LoadState>,
    metrics: TlsMetrics,
}

/// What the files held when the pair in use was loaded, and at the last change that failed to load (SHA-256 of
/// their contents, or of the read error).
struct LoadState {
    loaded: [u8; 32],
    failed: Option<[u8; 32]>,
}

impl fmt::Debug for Certs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certs").field("cert", &self.cert).field("key", &self.key).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

impl Certs {
    /// Loads the files again when their contents changed since the pair in use was loaded, or always with `force`.
    /// The files are read whole each time (a few KiB): file times are too coarse to tell two quick writes apart.
    fn reload(&self, force: bool) -> Reload {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let read = Files::read(&self.cert, &self.key);
        let seen = match &read {
            Ok(files) => files.digest(),
            Err(e) => Sha256::digest(format!("{e:#}")).into(),
        };
        if !force && seen == state.loaded {
            return Reload::Unchanged;
        }
        match read.and_then(|files| files.parse(&self.provider)) {
            Ok(pair) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
                *state = LoadState { loaded: seen, failed: None };
                self.metrics.reload(true);
                info!(cert = %self.cert.display(), key = %self.key.display(), "TLS certificate reloaded");
                Reload::Loaded
            }
            Err(error) => {
                let new = force || state.failed != Some(seen);
                if new {
                    self.metrics.reload(false);
                }
                state.failed = Some(seen);
                Reload::Failed { error, new }
            }
        }
    }
}

/// The two files' contents.
struct Files<'a> {
    cert_path: &'a Path,
    key_path: &'a Path,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl<'a> Files<'a> {
    fn read(cert_path: &'a Path, key_path: &'a Path) -> anyhow::Result<Self> {
        let cert = std::fs::read(cert_path).with_context(|| format!("tls.cert: reading {}", cert_path.display()))?;
        let key = std::fs::read(key_path).with_context(|| format!("tls.key: reading {}", key_path.display()))?;
        Ok(Self { cert_path, key_path, cert, key })
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(u64::try_from(self.cert.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(&self.cert);
        h.update(&self.key);
        h.finalize().into()
    }

    /// The certificate chain and its private key, checked to belong together; errors name the file at fault.
    fn parse(&self, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
        let (cert, key) = (self.cert_path.display(), self.key_path.display());
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("tls.cert: {cert}: not a valid PEM file: {e}"))?;
        anyhow::ensure!(!chain.is_empty(), "tls.cert: {cert} holds no certificate (PEM `-----BEGIN CERTIFICATE-----`)");
        let der = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| match e {
            pem::Error::NoItemsFound => anyhow::anyhow!(
                "tls.key: {key} holds no private key (PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC \
                 PRIVATE KEY`; encrypted keys are not supported)"
            ),
            e => anyhow::anyhow!("tls.key: {key}: not a valid PEM file: {e}"),
        })?;
        let signing = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| anyhow::anyhow!("tls.key: {key}: unusable private key: {e}"))?;
        let pair = CertifiedKey::new(chain, signing);
        match pair.keys_match() {
            Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(pair),
            Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(anyhow::anyhow!(
                "tls.key: {key} is not the private key of the first certificate in {cert} (tls.cert must start with \
                 the hub's own certificate)"
            )),
            Err(e) => Err(anyhow::anyhow!("tls.cert: {cert}: the first certificate does not parse: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` and its key, as PEM.
    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        (pem_block("CERTIFICATE", cert.der()), pem_block("PRIVATE KEY", &key.serialize_der()))
    }

    fn pem_block(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    struct Dir(PathBuf);

    impl Dir {
        /// A new directory holding `cert.pem` and `key.pem`, a pair that belongs together.
        fn with_pair(name: &str) -> (Self, PathBuf, PathBuf) {
            let dir = std::env::temp_dir().join(format!("podium-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let dir = Self(dir);
            let (cert_pem, key_pem) = pair();
            let cert = dir.write("cert.pem", &cert_pem);
            let key = dir.write("key.pem", &key_pem);
            (dir, cert, key)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config(cert: &Path, key: &Path) -> TlsConfig {
        TlsConfig { cert: Some(cert.to_owned()), key: Some(key.to_owned()), ..TlsConfig::default() }
    }

    fn error(config: &TlsConfig) -> String {
        match Tls::new(config, crate::metrics::Metrics::new().tls()) {
            Ok(_) => panic!("loaded"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let (dir, cert, key) = Dir::with_pair("bad");
        assert!(Tls::new(&config(&cert, &key), crate::metrics::Metrics::new().tls()).unwrap().is_some());

        let missing = dir.0.join("missing.pem");
        let e = error(&config(&missing, &key));
        assert!(e.starts_with("tls.cert: reading ") && e.contains("missing.pem"), "{e}");
        let e = error(&config(&cert, &missing));
        assert!(e.starts_with("tls.key: reading ") && e.contains("missing.pem"), "{e}");

        // The two files swapped: neither holds what it should.
        let e = error(&config(&key, &cert));
        assert!(e.contains("key.pem holds no certificate"), "{e}");
        let e = error(&config(&cert, &cert));
        assert!(e.contains("cert.pem holds no private key"), "{e}");

        let garbage = dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
        let e = error(&config(&garbage, &key));
        assert!(e.contains("garbage.pem: not a valid PEM file"), "{e}");

        // Valid base64 that is no certificate.
        let junk = dir.write("junk.pem", &pem_block("CERTIFICATE", b"not a certificate"));
        let e = error(&config(&junk, &key));
        assert!(e.contains("junk.pem: the first certificate does not parse"), "{e}");

        let (_, other_key) = pair();
        let other = dir.write("other-key.pem", &other_key);
        let e = error(&config(&cert, &other));
        assert!(e.contains("other-key.pem is not the private key of the first certificate in"), "{e}");
        assert!(e.contains("cert.pem"), "{e}");
    }

    #[test]
    fn a_reload_swaps_the_pair_only_when_it_loads() {
        let (_dir, cert, key) = Dir::with_pair("reload");
        let metrics = crate::metrics::Metrics::new();
        let tls = Tls::new(&config(&cert, &key), metrics.tls()).unwrap().unwrap();
        let in_use = || tls.certs.current.read().unwrap().cert[0].clone();
        let first = in_use();
        assert!(matches!(tls.certs.reload(false), Reload::Unchanged));

        // Half a renewal: a new certificate, the old key. Reported once, retried at every check.
        let (cert2, key2) = pair();
        std::fs::write(&cert, &cert2).unwrap();
        assert!(matches!(tls.certs.reload(false), Reload::Failed { new: true, .. }));
        assert!(matches!(tls.certs.reload(false), Reload::Failed { new: false, .. }));
        assert_eq!(in_use(), first);

        std::fs::write(&key, &key2).unwrap();
        assert!(matches!(tls.certs.reload(false), Reload::Loaded));
        assert_ne!(in_use(), first);
        assert!(matches!(tls.certs.reload(false), Reload::Unchanged));
        assert!(matches!(tls.certs.reload(true), Reload::Loaded));
    }
}
