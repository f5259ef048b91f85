//! The client commands of `spate serve`'s API: `spate submit`, `jobs`, `stop`, `logs`,
//! `status`. The server is `--server` or `SPATE_SERVER` (default `http://127.0.0.1:8420`), the
//! token `SPATE_TOKEN` or the file `--token-file`; a refusal exits non-zero with the server's
//! reason. An `https://` server's certificate is checked against the system's certificate
//! authorities, or only those of `--ca-cert` (`SPATE_CA_CERT`), a PEM file.

use anyhow::{Context, Result, anyhow, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the server is and who is asking.
pub struct Client {
    server: String,
    token: String,
    agent: ureq::Agent,
}

/// The server when neither `--server` nor `SPATE_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8420";

/// The largest answer read (a job's log is read in parts of at most this).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// TLS through OpenSSL (native-tls; already built for the Kafka client), trusting the
/// certificates of the PEM file `ca_cert`, or else the system's certificate authorities.
fn tls_config(ca_cert: Option<&Path>) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
    let roots = match ca_cert {
        None => RootCerts::PlatformVerifier,
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
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
            RootCerts::new_with_certs(&certs)
        }
    };
    Ok(TlsConfig::builder()
        .provider(TlsProvider::NativeTls)
        .root_certs(roots)
        .build())
}

impl Client {
    /// A client of `server` (else `SPATE_SERVER`, else the default) with the token of
    /// `token_file` (else `SPATE_TOKEN`), trusting the certificate authorities of `ca_cert`
    /// (else `SPATE_CA_CERT`, else the system's) for an `https://` server.
    pub fn new(
        server: Option<String>,
        token_file: Option<&Path>,
        ca_cert: Option<PathBuf>,
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
        let ca_cert = ca_cert.or_else(|| std::env::var_os("SPATE_CA_CERT").map(PathBuf::from));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .tls_config(tls_config(ca_cert.as_deref())?)
            .build()
            .into();
        Ok(Client {
            server: server.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            agent,
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
            let hint = if dropped && self.server.starts_with("http://") {
                " (does the server speak HTTPS? then use https://)"
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
