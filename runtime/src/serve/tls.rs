//! HTTPS for `spate serve` (`[server] tls-cert` and `tls-key`), with OpenSSL: it is already
//! built, vendored, for the Kafka and PostgreSQL clients, so this adds no second TLS stack.
//! Each connection's handshake runs on a task of its own with a deadline, so a client that
//! never finishes one holds up no one else; connections that finished it are handed to axum.

use anyhow::{Context, Result};
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_openssl::SslStream;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Handshakes finished and not yet taken by the server, at most.
const READY_CONNECTIONS: usize = 64;

/// The server's TLS settings: its certificate chain and private key (PEM files), checked to
/// belong together. Mozilla's "intermediate" settings: TLS 1.2 and 1.3.
pub fn acceptor(cert: &Path, key: &Path) -> Result<SslAcceptor> {
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

/// A listener whose connections have finished a TLS handshake.
pub struct TlsListener {
    ready: mpsc::Receiver<(SslStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener`, handshaking with `acceptor`; must be called inside the runtime.
    pub fn new(listener: tokio::net::TcpListener, acceptor: SslAcceptor) -> std::io::Result<Self> {
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
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
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
