//! `server.toml`: where `spate serve` listens, where it keeps its data, and its tenants: each
//! with the SHA-256 of its API token and its policy (the `[defaults]` policy with the tenant's
//! own fields on top; its data root and tenant name are the server's to set).

use super::quota::Quota;
use super::tls::TlsFiles;
use crate::config::Policy;
use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The server's config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: ServerSection,
    #[serde(default)]
    defaults: toml::Table,
    #[serde(default)]
    tenants: Vec<toml::Table>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ServerSection {
    bind: Option<SocketAddr>,
    data_dir: PathBuf,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_client_crl: Option<PathBuf>,
}

/// The server's settings, read and checked.
#[derive(Debug)]
pub struct ServerConfig {
    /// Where the API listens (default 127.0.0.1:8420).
    pub bind: SocketAddr,
    /// Where tenants' data, jobs and the registry are kept.
    pub data_dir: PathBuf,
    /// HTTPS: the certificate chain and private key (PEM files), and the authorities that sign
    /// the clients' certificates when clients must show one; plain HTTP without.
    pub tls: Option<TlsFiles>,
    /// The tenants, in file order.
    pub tenants: Vec<Tenant>,
}

/// A tenant: who may call the API with which token, and what its jobs may do.
#[derive(Debug)]
pub struct Tenant {
    /// Its name (jobs are named per tenant).
    pub name: String,
    /// SHA-256 of its token.
    token_sha256: [u8; 32],
    /// Whether it sees and stops every tenant's jobs.
    pub admin: bool,
    /// `client-cert-sha256`: the SHA-256 fingerprints of the client certificates its token is
    /// taken from (mutual TLS); empty: from any client the server lets in.
    pub client_certificates: Vec<[u8; 32]>,
    /// What its pipelines may ask for.
    pub policy: Arc<Policy>,
    /// The most its jobs may consume together (`[tenants.quota]`, else `[defaults.quota]`).
    pub quota: Option<Quota>,
}

/// The port `spate serve` listens on by default.
pub const DEFAULT_PORT: u16 = 8420;

/// Fields of a `[[tenants]]` table that are not policy fields.
const TENANT_FIELDS: &[&str] = &["name", "token-sha256", "admin", "client-cert-sha256"];

impl ServerConfig {
    /// Reads `path`; a relative `data-dir` is taken from the file's directory. The data
    /// directory and each tenant's data root are created.
    pub fn load(path: &Path) -> Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the server config {}", path.display()))?;
        let file: File =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {}", path.display(), e.message()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let data_dir = base.join(&file.server.data_dir);
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data-dir {}", data_dir.display()))?;
        let server = &file.server;
        let tls = match (&server.tls_cert, &server.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: base.join(cert),
                key: base.join(key),
                client_ca: server.tls_client_ca.as_ref().map(|ca| base.join(ca)),
                client_crl: server.tls_client_crl.as_ref().map(|crl| base.join(crl)),
            }),
            (None, None) if server.tls_client_ca.is_some() => bail!(
                "{}: [server]: tls-client-ca needs tls-cert and tls-key (client certificates \
                 are asked for in the TLS handshake)",
                path.display()
            ),
            (None, None) => None,
            _ => bail!(
                "{}: [server]: tls-cert and tls-key go together (the certificate chain and its \
                 private key, PEM)",
                path.display()
            ),
        };
        if server.tls_client_crl.is_some() && server.tls_client_ca.is_none() {
            bail!(
                "{}: [server]: tls-client-crl needs tls-client-ca (the lists revoke client \
                 certificates, which are asked for only with it)",
                path.display()
            );
        }
        let mut tenants: Vec<Tenant> = Vec::new();
        for (i, table) in file.tenants.iter().enumerate() {
            let tenant = Tenant::read(table, &file.defaults, &data_dir)
                .map_err(|e| anyhow!("{}: tenants[{i}]: {e:#}", path.display()))?;
            if tenants.iter().any(|t| t.name == tenant.name) {
                bail!(
                    "{}: tenants[{i}]: tenant '{}' is defined twice",
                    path.display(),
                    tenant.name
                );
            }
            if !tenant.client_certificates.is_empty()
                && tls.as_ref().is_none_or(|t| t.client_ca.is_none())
            {
                bail!(
                    "{}: tenants[{i}]: client-cert-sha256 needs [server] tls-client-ca (clients \
                     show certificates only when the server asks for them)",
                    path.display()
                );
            }
            tenants.push(tenant);
        }
        Ok(ServerConfig {
            bind: file
                .server
                .bind
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))),
            data_dir,
            tls,
            tenants,
        })
    }

    /// The tenant whose token this is, if any.
    pub fn tenant_with_token(&self, token: &str) -> Option<&Tenant> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.tenants.iter().find(|t| t.token_sha256 == hash)
    }

    /// The tenant named `name`.
    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.name == name)
    }
}

/// Where tenant `name`'s files are under the data directory.
pub fn tenant_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("tenants").join(name)
}

impl Tenant {
    /// Whether its token (or session) is taken from a client that showed the certificate of
    /// fingerprint `certificate` (`None`: none): any, unless it is bound to certificates.
    pub fn takes_certificate(&self, certificate: Option<[u8; 32]>) -> bool {
        self.client_certificates.is_empty()
            || certificate.is_some_and(|c| self.client_certificates.contains(&c))
    }

    fn read(table: &toml::Table, defaults: &toml::Table, data_dir: &Path) -> Result<Tenant> {
        let name = match table.get("name") {
            Some(toml::Value::String(name)) => name.clone(),
            _ => bail!("needs `name` (a string)"),
        };
        if !is_name(&name) {
            bail!("name '{name}': use letters, digits, '-' and '_'");
        }
        let token_sha256 = match table.get("token-sha256") {
            Some(toml::Value::String(hex)) => parse_sha256(hex).ok_or_else(|| {
                anyhow!("token-sha256: not 64 hex digits (sha256sum of the token)")
            })?,
            _ => bail!("needs `token-sha256` (the hex SHA-256 of its API token)"),
        };
        let admin = match table.get("admin") {
            None => false,
            Some(toml::Value::Boolean(admin)) => *admin,
            Some(_) => bail!("admin: true or false"),
        };
        let client_certificates = match table.get("client-cert-sha256") {
            None => Vec::new(),
            Some(toml::Value::String(one)) => vec![one.as_str()],
            Some(toml::Value::Array(many)) => many
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| anyhow!("client-cert-sha256: strings"))
                })
                .collect::<Result<_>>()?,
            Some(_) => bail!("client-cert-sha256: a fingerprint or a list of them"),
        }
        .into_iter()
        .map(|hex| {
            // As `openssl x509 -fingerprint -sha256` prints it, with or without the colons.
            parse_sha256(&hex.replace(':', "")).ok_or_else(|| {
                anyhow!(
                    "client-cert-sha256: '{hex}' is not a SHA-256 fingerprint (64 hex digits, \
                     colons allowed: openssl x509 -noout -fingerprint -sha256 -in client.pem)"
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let mut policy = defaults.clone();
        for (key, value) in table {
            if !TENANT_FIELDS.contains(&key.as_str()) {
                policy.insert(key.clone(), value.clone());
            }
        }
        for set_by_server in ["data-root", "tenant"] {
            if policy.contains_key(set_by_server) {
                bail!("{set_by_server} is set by the server, not in its config");
            }
        }
        let quota = policy
            .remove("quota")
            .map(Quota::read)
            .transpose()
            .map_err(|e| anyhow!("quota: {e}"))?;
        let root = tenant_dir(data_dir, &name).join("data");
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        policy.insert("data-root".into(), root.display().to_string().into());
        policy.insert("tenant".into(), name.clone().into());
        let policy: Policy = toml::Value::Table(policy)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow!("{}", e.message()))?;
        Ok(Tenant {
            name,
            token_sha256,
            admin,
            client_certificates,
            policy: Arc::new(policy),
            quota,
        })
    }
}

/// Whether `name` may name a tenant or a job: letters, digits, `-`, `_` (it becomes a path).
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_get_the_defaults_their_own_fields_and_a_root_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        let hash = format!("{:x}", Sha256::digest(b"token-a"));
        std::fs::write(
            &path,
            format!(
                "[server]\ndata-dir = \"data\"\n\n[defaults]\nendpoints = [\"127.0.0.1:*\"]\nmax-workers = 2\n\n\
                 [[tenants]]\nname = \"a\"\ntoken-sha256 = \"{hash}\"\nmax-workers = 1\n\n\
                 [[tenants]]\nname = \"root\"\ntoken-sha256 = \"{}\"\nadmin = true\n",
                "0".repeat(64)
            ),
        )
        .unwrap();
        let config = ServerConfig::load(&path).unwrap();
        assert_eq!(config.bind.port(), DEFAULT_PORT);
        let a = config.tenant_with_token("token-a").unwrap();
        assert_eq!(a.name, "a");
        assert!(!a.admin);
        assert_eq!(a.policy.max_workers, Some(1), "the tenant's field wins");
        assert_eq!(a.policy.endpoints, ["127.0.0.1:*"]);
        assert_eq!(a.policy.tenant.as_deref(), Some("a"));
        assert!(a.policy.data_root.ends_with("data/tenants/a/data"));
        assert!(a.policy.data_root.is_dir());
        assert!(config.tenant_with_token("token-b").is_none());
        assert!(config.tenant("root").unwrap().admin);

        std::fs::write(
            &path,
            format!("[server]\ndata-dir = \"d\"\n\n[[tenants]]\nname = \"a\"\ntoken-sha256 = \"{hash}\"\ndata-root = \"/\"\n"),
        )
        .unwrap();
        let error = ServerConfig::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("tenants[0]: data-root is set by the server"),
            "{error}"
        );
    }

    #[test]
    fn the_tls_files_are_taken_from_the_config_files_directory_and_checked_to_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        let load = |server: &str| {
            std::fs::write(&path, format!("[server]\ndata-dir = \"d\"\n{server}")).unwrap();
            ServerConfig::load(&path)
        };
        let config = load(
            "tls-cert = \"c.pem\"\ntls-key = \"k.pem\"\ntls-client-ca = \"ca.pem\"\n\
             tls-client-crl = \"crl.pem\"\n",
        )
        .unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("c.pem"));
        assert_eq!(tls.key, dir.path().join("k.pem"));
        assert_eq!(tls.client_ca, Some(dir.path().join("ca.pem")));
        assert_eq!(tls.client_crl, Some(dir.path().join("crl.pem")));
        let crl_alone =
            load("tls-cert = \"c.pem\"\ntls-key = \"k.pem\"\ntls-client-crl = \"crl.pem\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            crl_alone.contains("tls-client-crl needs tls-client-ca"),
            "{crl_alone}"
        );
        let alone = load("tls-client-ca = \"ca.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            alone.contains("tls-client-ca needs tls-cert and tls-key"),
            "{alone}"
        );
        let half = load("tls-cert = \"c.pem\"\n").unwrap_err().to_string();
        assert!(half.contains("tls-cert and tls-key go together"), "{half}");
    }

    #[test]
    fn a_tenant_is_bound_to_client_certificates_by_their_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        let hash = "0".repeat(64);
        let load = |server: &str, bound: &str| {
            std::fs::write(
                &path,
                format!(
                    "[server]\ndata-dir = \"d\"\n{server}\n[[tenants]]\nname = \"a\"\n\
                     token-sha256 = \"{hash}\"\nclient-cert-sha256 = {bound}\n"
                ),
            )
            .unwrap();
            ServerConfig::load(&path)
        };
        let mutual = "tls-cert = \"c.pem\"\ntls-key = \"k.pem\"\ntls-client-ca = \"ca.pem\"\n";
        // As openssl prints it (colons, upper case) or as plain hex.
        let colons: Vec<String> = (0..32).map(|i| format!("{:02X}", i)).collect();
        let plain = "ab".repeat(32);
        let config = load(mutual, &format!("[\"{}\", \"{plain}\"]", colons.join(":"))).unwrap();
        let a = &config.tenants[0];
        let first: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(a.client_certificates, [first, [0xab; 32]]);
        assert!(a.takes_certificate(Some(first)));
        assert!(!a.takes_certificate(Some([1; 32])));
        assert!(!a.takes_certificate(None));
        let one = load(mutual, &format!("\"{plain}\"")).unwrap();
        assert_eq!(one.tenants[0].client_certificates, [[0xab; 32]]);
        let short = load(mutual, "\"AB:CD\"").unwrap_err().to_string();
        assert!(
            short.contains("tenants[0]: client-cert-sha256: 'AB:CD' is not a SHA-256"),
            "{short}"
        );
        // Without a client authority, no client shows a certificate.
        let unasked = load("", &format!("\"{plain}\"")).unwrap_err().to_string();
        assert!(
            unasked.contains("client-cert-sha256 needs [server] tls-client-ca"),
            "{unasked}"
        );
    }
}
