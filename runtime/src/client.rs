//! The client commands of `spate serve`'s API: `spate submit`, `jobs`, `stop`, `logs`,
//! `status`. The server is `--server` or `SPATE_SERVER` (default `http://127.0.0.1:8420`), the
//! token `SPATE_TOKEN` or the file `--token-file`; a refusal exits non-zero with the server's
//! reason. An `https://` server's certificate is checked against the system's certificate
//! authorities, or only those of `--ca-cert` (`SPATE_CA_CERT`), a PEM file; to a server that
//! asks for a client certificate (mutual TLS), the client shows `--client-cert` with its
//! `--client-key` (`SPATE_CLIENT_CERT`, `SPATE_CLIENT_KEY`).

use anyhow::{Context, Result, anyhow, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the server is and who is asking.
pub struct Client {
    server: String,
    token: String,
    agent: ureq::Agent,
    /// Whether the client shows a certificate when the server asks for one.
    shows_certificate: bool,
}

/// The server when neither `--server` nor `SPATE_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8420";

/// The largest answer read (a job's log is read in parts of at most this).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// The client's TLS files: whom it trusts, and what it shows a server that asks for a
/// certificate (mutual TLS, `[server] tls-client-ca`).
#[derive(Default)]
pub struct ClientTls {
    /// The certificate authorities to trust (PEM; else `SPATE_CA_CERT`, else the system's).
    pub ca_cert: Option<PathBuf>,
    /// The client's certificate chain (PEM; else `SPATE_CLIENT_CERT`).
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM, PKCS#8, PKCS#1 or SEC1; else `SPATE_CLIENT_KEY`).
    pub client_key: Option<PathBuf>,
}

impl ClientTls {
    /// Fills what was not given from the environment.
    fn or_env(self) -> ClientTls {
        let env = |name: &str| std::env::var_os(name).map(PathBuf::from);
        ClientTls {
            ca_cert: self.ca_cert.or_else(|| env("SPATE_CA_CERT")),
            client_cert: self.client_cert.or_else(|| env("SPATE_CLIENT_CERT")),
            client_key: self.client_key.or_else(|| env("SPATE_CLIENT_KEY")),
        }
    }

    /// TLS through OpenSSL (native-tls; already built for the Kafka client), trusting the
    /// certificates of `ca_cert`, or else the system's certificate authorities, and showing
    /// `client_cert` when asked.
    fn config(&self) -> Result<ureq::tls::TlsConfig> {
        use ureq::tls::{ClientCert, RootCerts, TlsConfig, TlsProvider};
        let roots = match &self.ca_cert {
            None => RootCerts::PlatformVerifier,
            Some(path) => RootCerts::new_with_certs(&certificates(path, "CA certificate")?),
        };
        let client_cert = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some(ClientCert::new_with_certs(
                &certificates(cert, "client certificate")?,
                private_key(key)?,
            )),
            (None, None) => None,
            _ => bail!(
                "--client-cert and --client-key go together (SPATE_CLIENT_CERT and \
                 SPATE_CLIENT_KEY): the certificate and its private key"
            ),
        };
        Ok(TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(roots)
            .client_cert(client_cert)
            .build())
    }
}

/// The certificates of the PEM file `path` (a `what`), at least one.
fn certificates(path: &Path, what: &str) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    use ureq::tls::PemItem;
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: not a PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

/// The private key of the PEM file `path`, as PKCS#8 (which native-tls takes; OpenSSL reads
/// the other PEM forms too).
fn private_key(path: &Path) -> Result<ureq::tls::PrivateKey<'static>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the client key {}", path.display()))?;
    let pkcs8 = openssl::pkey::PKey::private_key_from_pem(&pem)
        .and_then(|key| key.private_key_to_pem_pkcs8())
        .map_err(|e| anyhow!("{}: not a PEM private key: {e}", path.display()))?;
    ureq::tls::PrivateKey::from_pem(&pkcs8).map_err(|e| anyhow!("{}: {e}", path.display()))
}

impl Client {
    /// A client of `server` (else `SPATE_SERVER`, else the default) with the token of
    /// `token_file` (else `SPATE_TOKEN`), speaking TLS to an `https://` server with `tls`
    /// (each file else from the environment).
    pub fn new(
        server: Option<String>,
        token_file: Option<&Path>,
        tls: ClientTls,
    ) -> Result<Client> {
        let server = server
            .or_else(|| std::env::var("SPATE_SERVER").ok())
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let token = match token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?,
            None => std::env::var("SPATE_TOKEN")
                .map_err(|_| anyhow!("no API token: set SPATE_TOKEN or give --token-file"))?,
        };
        let tls = tls.or_env();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .tls_config(tls.config()?)
            .build()
            .into();
        Ok(Client {
            server: server.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            agent,
            shows_certificate: tls.client_cert.is_some(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.server)
    }

    /// The answer's body, or the server's reason as the error.
    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(String, Option<String>)> {
        let mut response = response.map_err(|e| {
            // An HTTPS server drops a plain HTTP request at its first bytes.
            let dropped = matches!(&e, ureq::Error::Io(io) if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ));
            // A server that wants a client certificate refuses the handshake, or (TLS 1.3)
            // the first request, with a "certificate required" alert, or closes the
            // connection before the client reads the alert.
            let text = e.to_string();
            let https = self.server.starts_with("https://");
            let certificate_wanted = text.contains("certificate required")
                || (https && (dropped || text.contains("handshake failure")));
            let hint = if dropped && self.server.starts_with("http://") {
                " (does the server speak HTTPS? then use https://)"
            } else if certificate_wanted && !self.shows_certificate {
                " (does the server ask for a client certificate? then give --client-cert and \
                 --client-key)"
            } else {
                ""
            };
            anyhow!("cannot reach {}: {e}{hint}", self.server)
        })?;
        let state = response
            .headers()
            .get("spate-job-state")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| anyhow!("cannot read the server's answer: {e}"))?;
        if !status.is_success() {
            let reason = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            bail!("{reason} (HTTP {})", status.as_u16());
        }
        Ok((body, state))
    }

    fn get(&self, path: &str) -> Result<(String, Option<String>)> {
        let request = self
            .agent
            .get(&self.url(path))
            .header("Authorization", &format!("Bearer {}", self.token));
        self.answer(request.call())
    }

    fn post(&self, path: &str, body: &[u8]) -> Result<String> {
        let request = self
            .agent
            .post(&self.url(path))
            .header("Authorization", &format!("Bearer {}", self.token))
            .content_type("application/json");
        Ok(self.answer(request.send(body))?.0)
    }

    /// Submits `pipeline` with `plugins`; prints the job's id on the last line.
    pub fn submit(&self, pipeline: &Path, plugins: &[PathBuf]) -> Result<()> {
        use base64::Engine as _;
        let text = std::fs::read_to_string(pipeline)
            .with_context(|| format!("cannot read {}", pipeline.display()))?;
        let mut files = serde_json::Map::new();
        for plugin in plugins {
            let bytes = std::fs::read(plugin)
                .with_context(|| format!("cannot read {}", plugin.display()))?;
            let name = plugin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| anyhow!("{} names no file", plugin.display()))?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            files.insert(name, encoded.into());
        }
        let file_name = pipeline
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let body = serde_json::json!({
            "file_name": file_name,
            "pipeline": text,
            "plugins": files,
        });
        let answer = self.post("jobs", &serde_json::to_vec(&body)?)?;
        let record: serde_json::Value = serde_json::from_str(&answer)?;
        println!(
            "{} {}",
            record["name"].as_str().unwrap_or(""),
            record["state"].as_str().unwrap_or("")
        );
        println!("{}", record["id"].as_str().unwrap_or(""));
        Ok(())
    }

    /// Prints one job per line: id, name, state (and why it failed).
    pub fn jobs(&self) -> Result<()> {
        let (answer, _) = self.get("jobs")?;
        let jobs: Vec<serde_json::Value> = serde_json::from_str(&answer)?;
        let mut out = std::io::stdout().lock();
        for job in jobs {
            let mut line = format!(
                "{} {} {}",
                job["id"].as_str().unwrap_or(""),
                job["name"].as_str().unwrap_or(""),
                job["state"].as_str().unwrap_or("")
            );
            if let Some(error) = job["error"].as_str() {
                line.push_str(&format!(" ({error})"));
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    /// Stops job `id`.
    pub fn stop(&self, id: &str) -> Result<()> {
        let answer = self.post(&format!("jobs/{id}/stop"), b"")?;
        let record: serde_json::Value = serde_json::from_str(&answer)?;
        println!(
            "{} {}",
            record["id"].as_str().unwrap_or(id),
            record["state"].as_str().unwrap_or("")
        );
        Ok(())
    }

    /// Prints job `id`'s record and what it is doing (JSON).
    pub fn status(&self, id: &str) -> Result<()> {
        let (answer, _) = self.get(&format!("jobs/{id}"))?;
        let status: serde_json::Value = serde_json::from_str(&answer)?;
        println!("{}", serde_json::to_string_pretty(&status)?);
        Ok(())
    }

    /// Prints the usage of the tenants the token may see (JSON); with `reset`, first counts
    /// that tenant's usage from zero again and starts its paused jobs (an admin's token).
    pub fn usage(&self, reset: Option<&str>) -> Result<()> {
        let answer = match reset {
            Some(tenant) => format!("[{}]", self.post(&format!("usage/{tenant}/reset"), b"")?),
            None => self.get("usage")?.0,
        };
        let usage: serde_json::Value = serde_json::from_str(&answer)?;
        println!("{}", serde_json::to_string_pretty(&usage)?);
        Ok(())
    }

    /// Prints job `id`'s log; with `follow`, goes on printing until the job ends.
    pub fn logs(&self, id: &str, follow: bool) -> Result<()> {
        let mut from = 0u64;
        loop {
            let (text, state) = self.get(&format!("jobs/{id}/logs?from={from}"))?;
            from += text.len() as u64;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            let ended = matches!(
                state.as_deref(),
                Some("stopped" | "paused" | "finished" | "failed")
            );
            if !follow || (ended && text.is_empty()) {
                return Ok(());
            }
            if text.is_empty() {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
}
