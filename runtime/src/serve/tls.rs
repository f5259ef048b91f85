//! HTTPS for `spate serve` (`[server] tls-cert` and `tls-key`), with OpenSSL: it is already
//! built, vendored, for the Kafka and PostgreSQL clients, so this adds no second TLS stack.
//! Each connection's handshake runs on a task of its own with a deadline, so a client that
//! never finishes one holds up no one else; connections that finished it are handed to axum.
//! A renewed certificate is served without a restart: the files are looked at again for new
//! connections, at most once a second, and loaded when they changed.

use anyhow::{Context, Result};
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_openssl::SslStream;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Handshakes finished and not yet taken by the server, at most.
const READY_CONNECTIONS: usize = 64;

/// The server's TLS settings: its certificate chain and private key (PEM files), checked to
/// belong together. Mozilla's "intermediate" settings: TLS 1.2 and 1.3.
fn acceptor(cert: &Path, key: &Path) -> Result<SslAcceptor> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .context("cannot set up TLS")?;
    builder
        .set_certificate_chain_file(cert)
        .with_context(|| format!("tls-cert: cannot read {} (PEM)", cert.display()))?;
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .with_context(|| format!("tls-key: cannot read {} (PEM)", key.display()))?;
    builder.check_private_key().with_context(|| {
        format!(
            "tls-key {} is not the key of tls-cert {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(builder.build())
}

/// How often, at most, the certificate files are looked at again.
const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The server's certificate and key files, and the TLS settings made from them, made again when
/// the files change (a certificate renewed by certbot or an ACME client is served without a
/// restart).
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    loaded: Mutex<Loaded>,
}

/// The settings served, and what the files were like when they were last read.
struct Loaded {
    acceptor: SslAcceptor,
    /// Both files' modification time and size (`None` where one cannot be read).
    stamp: Option<[(SystemTime, u64); 2]>,
    checked: Instant,
}

impl Certificates {
    /// Reads `cert` and `key` (see [`acceptor`]).
    pub fn load(cert: &Path, key: &Path) -> Result<Certificates> {
        let stamp = stamp(cert, key);
        Ok(Certificates {
            loaded: Mutex::new(Loaded {
                acceptor: acceptor(cert, key)?,
                stamp,
                checked: Instant::now(),
            }),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The settings for a new connection: made again from the files if they changed since
    /// they were read. Files that changed but do not load (a renewal half written, a key that
    /// is not the certificate's) leave the settings served as they were, said once per change.
    pub fn current(&self) -> SslAcceptor {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.checked.elapsed() >= RELOAD_CHECK_EVERY {
            loaded.checked = Instant::now();
            let stamp = stamp(&self.cert, &self.key);
            if stamp != loaded.stamp {
                loaded.stamp = stamp;
                match acceptor(&self.cert, &self.key) {
                    Ok(renewed) => {
                        loaded.acceptor = renewed;
                        tracing::info!(
                            "TLS: serving the certificate {} as changed",
                            self.cert.display()
                        );
                    }
                    Err(e) => tracing::warn!(
                        "TLS: {} or {} changed but cannot be used ({e:#}); still serving the \
                         certificate loaded before",
                        self.cert.display(),
                        self.key.display()
                    ),
                }
            }
        }
        loaded.acceptor.clone()
    }
}

/// What `cert` and `key` are like now: modification time and size of each.
fn stamp(cert: &Path, key: &Path) -> Option<[(SystemTime, u64); 2]> {
    let of = |path: &Path| {
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    };
    Some([of(cert)?, of(key)?])
}

/// A listener whose connections have finished a TLS handshake.
pub struct TlsListener {
    ready: mpsc::Receiver<(SslStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener`, handshaking with the `certificates` current for each connection;
    /// must be called inside the runtime.
    pub fn new(
        listener: tokio::net::TcpListener,
        certificates: Arc<Certificates>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_CONNECTIONS);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: wait rather than spin.
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (certificates.current(), sender.clone());
                tokio::spawn(async move {
                    let handshake = async {
                        let mut stream = SslStream::new(Ssl::new(acceptor.context())?, stream)?;
                        Pin::new(&mut stream)
                            .accept()
                            .await
                            .map_err(std::io::Error::other)?;
                        Ok::<_, anyhow::Error>(stream)
                    };
                    match tokio::time::timeout(HANDSHAKE_DEADLINE, handshake).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e:#}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = SslStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended (it does not): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
