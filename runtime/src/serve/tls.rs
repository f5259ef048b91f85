//! HTTPS for `spate serve` (`[server] tls-cert` and `tls-key`), with OpenSSL: it is already
//! built, vendored, for the Kafka and PostgreSQL clients, so this adds no second TLS stack.
//! Each connection's handshake runs on a task of its own with a deadline, so a client that
//! never finishes one holds up no one else; connections that finished it are handed to axum.
//! A renewed certificate is served without a restart: the files are looked at again for new
//! connections, at most once a second, and loaded when they changed. With `tls-client-ca`
//! every client must show a certificate signed by one of its authorities (mutual TLS), on top
//! of its API token, and with `tls-client-crl` none its authority has revoked; a tenant may be bound to certificates of its own (`client-cert-sha256`),
//! whose fingerprints each connection carries ([`Peer`]).

use anyhow::{Context, Result};
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use openssl::hash::MessageDigest;
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::store::X509Lookup;
use openssl::x509::verify::X509VerifyFlags;
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

/// The files `spate serve` speaks TLS with (`[server]` in server.toml).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `tls-cert`: the server's certificate chain (PEM).
    pub cert: PathBuf,
    /// `tls-key`: its private key (PEM).
    pub key: PathBuf,
    /// `tls-client-ca`: the certificate authorities (PEM) that sign the clients' certificates;
    /// with it, a client must show a certificate one of them signed (mutual TLS), or the
    /// handshake fails before any request is read.
    pub client_ca: Option<PathBuf>,
    /// `tls-client-crl`: certificate revocation lists (PEM), one from each of those
    /// authorities; a client certificate revoked in its authority's list is refused.
    pub client_crl: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [self.cert.as_path(), self.key.as_path()]
            .into_iter()
            .chain(self.client_ca.as_deref())
            .chain(self.client_crl.as_deref())
    }
}

/// The server's TLS settings: its certificate chain and private key, checked to belong
/// together, and the clients' authorities if they must show a certificate. Mozilla's
/// "intermediate" settings: TLS 1.2 and 1.3.
fn acceptor(files: &TlsFiles) -> Result<SslAcceptor> {
    let TlsFiles {
        cert,
        key,
        client_ca,
        client_crl,
    } = files;
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
    if let Some(ca) = client_ca {
        let unreadable = || format!("tls-client-ca: cannot read {} (PEM)", ca.display());
        // The authorities verified against, and the names the server sends in its request
        // for a certificate, so that a client holding several picks the right one.
        builder.set_ca_file(ca).with_context(unreadable)?;
        let names = openssl::x509::X509Name::load_client_ca_file(ca).with_context(unreadable)?;
        if names.is_empty() {
            anyhow::bail!("tls-client-ca: no certificate in {}", ca.display());
        }
        builder.set_client_ca_list(names);
        builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    if let Some(crl) = client_crl {
        let unreadable = || format!("tls-client-crl: cannot read {} (PEM)", crl.display());
        let pem = std::fs::read(crl).with_context(unreadable)?;
        if !pem.windows(8).any(|w| w == b"X509 CRL") {
            anyhow::bail!("tls-client-crl: no revocation list in {}", crl.display());
        }
        let store = builder.cert_store_mut();
        (store.add_lookup(X509Lookup::file()))
            .and_then(|lookup| lookup.load_crl_file(crl, SslFiletype::PEM))
            .with_context(unreadable)?;
        // The client certificate's own authority must have a list in the file (as nginx's
        // `ssl_crl`): a certificate whose revocation cannot be checked is refused.
        store.set_flags(X509VerifyFlags::CRL_CHECK)?;
    }
    Ok(builder.build())
}

/// How often, at most, the certificate files are looked at again.
const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The server's certificate, key and client authorities, and the TLS settings made from them,
/// made again when the files change (a certificate renewed by certbot or an ACME client, a
/// client authority added, is served without a restart).
pub struct Certificates {
    files: TlsFiles,
    loaded: Mutex<Loaded>,
}

/// The settings served, and what the files were like when they were last read.
struct Loaded {
    acceptor: SslAcceptor,
    /// Every file's modification time and size (`None` where one cannot be read).
    stamp: Option<Vec<(SystemTime, u64)>>,
    checked: Instant,
}

impl Certificates {
    /// Reads the files (see [`acceptor`]).
    pub fn load(files: &TlsFiles) -> Result<Certificates> {
        Ok(Certificates {
            loaded: Mutex::new(Loaded {
                acceptor: acceptor(files)?,
                stamp: stamp(files),
                checked: Instant::now(),
            }),
            files: files.clone(),
        })
    }

    /// The settings for a new connection: made again from the files if they changed since
    /// they were read. Files that changed but do not load (a renewal half written, a key that
    /// is not the certificate's) leave the settings served as they were, said once per change.
    pub fn current(&self) -> SslAcceptor {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.checked.elapsed() >= RELOAD_CHECK_EVERY {
            loaded.checked = Instant::now();
            let stamp = stamp(&self.files);
            if stamp != loaded.stamp {
                loaded.stamp = stamp;
                let names = || {
                    let names: Vec<String> = (self.files.paths())
                        .map(|p| p.display().to_string())
                        .collect();
                    names.join(", ")
                };
                match acceptor(&self.files) {
                    Ok(renewed) => {
                        loaded.acceptor = renewed;
                        tracing::info!("TLS: serving {} as changed", names());
                    }
                    Err(e) => tracing::warn!(
                        "TLS: {} changed but cannot be used ({e:#}); still serving what was \
                         loaded before",
                        names()
                    ),
                }
            }
        }
        loaded.acceptor.clone()
    }
}

/// What the files are like now: modification time and size of each.
fn stamp(files: &TlsFiles) -> Option<Vec<(SystemTime, u64)>> {
    let of = |path: &Path| {
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    };
    files.paths().map(of).collect()
}

/// Who is at the other end of a connection: its address and, over mutual TLS, the SHA-256
/// fingerprint of the certificate it showed (what tenants bound to certificates are checked
/// against: `client-cert-sha256`).
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// Its address.
    pub address: SocketAddr,
    /// The SHA-256 of its certificate (DER), if it showed one.
    pub certificate_sha256: Option<[u8; 32]>,
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        *stream.remote_addr()
    }
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer {
            address: *stream.remote_addr(),
            certificate_sha256: None,
        }
    }
}

/// The SHA-256 fingerprint of the certificate the client of `stream` showed, if any.
fn certificate_sha256(stream: &SslStream<TcpStream>) -> Option<[u8; 32]> {
    let digest = (stream.ssl().peer_certificate()?)
        .digest(MessageDigest::sha256())
        .ok()?;
    digest.as_ref().try_into().ok()
}

/// A listener whose connections have finished a TLS handshake.
pub struct TlsListener {
    ready: mpsc::Receiver<(SslStream<TcpStream>, Peer)>,
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
                            let peer = Peer {
                                address: peer,
                                certificate_sha256: certificate_sha256(&stream),
                            };
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
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended (it does not): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer {
            address: self.local,
            certificate_sha256: None,
        })
    }
}
