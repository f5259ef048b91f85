//! A PostgreSQL table as an output, exactly-once in effect: each batch is written in one
//! transaction that also moves the output's progress marker (job, output, task, batch time) in
//! a progress table; a batch replayed after a crash finds its marker at or past its time and
//! writes nothing. A crash between the commit and its acknowledgement is covered the same way:
//! the retried batch finds the committed marker.
//!
//! Modes: `append` bulk-loads every record as a row with COPY; `upsert` keeps one row
//! per key, its value replaced; `accumulate` keeps one row per key, its value added to what is
//! there (a running total the database keeps). Upserts and accumulations are combined per key
//! in the batch, copied into a temporary table and merged with one `INSERT ... ON CONFLICT`.
//!
//! The marker is one row per (job, output, task), moved forward by each batch: the markers of
//! older batches are pruned by that very update, so the progress table never grows. Batches are
//! written in time order (recovery replays them in order), so a batch at or before the marker
//! was written; and every batch that reaches the output is in the batch log
//! ([`Output::remembers_batch_times`]), so recovery never forms another batch at a time the
//! marker has passed.

use super::claim::Claim;
use super::retry::{Permanent, retrying};
use super::{Output, OutputContext, OutputGauges, Replay, Sink};
use crate::batch::partition_bytes;
use crate::config::{ConfigError, ConnectorTable, Interval};
use crate::fault::host_fault;
use crate::record::{Shape, StreamType, json_value, write_value};
use crate::secret::SecretRef;
use crate::shuffle::{hash_key, partition_of};
use anyhow::{Result, anyhow, bail};
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{Client, Transaction};
use serde::Deserialize;
use spate_guest::{Partition, ValueType};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};
use toml::Spanned;

/// The most connections an output may write a batch with: each is a server backend, and a
/// pipeline (a tenant's too) must not take a server's every connection.
const MAX_CONNECTIONS: i64 = 32;

/// `type = "postgres"`: the fields of the table.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Fields {
    /// `postgresql://user@host:port/database` or `host=... user=...` (libpq's forms).
    url: Option<Spanned<String>>,
    /// `{ env = "VAR" }` or `{ file = "path" }`; overrides a password in `url`.
    password: Option<SecretRef>,
    /// The table written: `name` or `schema.name`, exactly as created (case-sensitive).
    table: Option<Spanned<String>>,
    /// `append` (default), `upsert` or `accumulate`.
    mode: Option<Mode>,
    /// The column of the record's key (default `key`).
    key_column: Option<String>,
    /// The column of the record's value (default `value`).
    value_column: Option<String>,
    /// An optional column that gets the batch time (`timestamptz`, `timestamp` or `bigint` ms).
    batch_time_column: Option<String>,
    /// Create the table, with columns of the stream's types, if it does not exist.
    create_table: Option<bool>,
    /// The progress table (default `spate_progress`), created if missing.
    progress_table: Option<String>,
    /// How long a connection attempt may take (default 10 s).
    connect_timeout: Option<Interval>,
    /// How long a batch is tried again while the server is away (default 2 min).
    retry_for: Option<Interval>,
    /// How many connections write each batch, each a share of its records in a transaction
    /// of its own with a marker of its own (default 1: a batch is one transaction).
    connections: Option<Spanned<i64>>,
}

/// What a record does to the table.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// Every record is a row.
    #[default]
    Append,
    /// One row per key; its value is replaced.
    Upsert,
    /// One row per key; its value is added to the row's.
    Accumulate,
}

impl Mode {
    fn keyed(self) -> bool {
        self != Mode::Append
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Append => "append",
            Mode::Upsert => "upsert",
            Mode::Accumulate => "accumulate",
        }
    }
}

/// The PostgreSQL output.
#[derive(Clone, Debug)]
pub struct PostgresOutput {
    connection: postgres::Config,
    /// How the connection is secured.
    tls: Tls,
    /// `user@host:port/database`, for messages.
    server: String,
    /// The table as the pipeline names it (and the output's name in the progress table).
    table_name: String,
    table: String,
    mode: Mode,
    key_column: String,
    value_column: String,
    batch_time_column: Option<String>,
    create_table: bool,
    /// The progress table, quoted for SQL, and as the pipeline names it.
    progress_table: String,
    progress_name: String,
    /// The job in the progress table: `<tenant>.<job>`.
    job: String,
    retry_for: Duration,
    /// Connections writing each batch (tasks `0..connections` in the progress table).
    connections: usize,
}

/// Reads a PostgreSQL output's table.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Output>, ConfigError> {
    let fields: Fields = table.fields()?;
    let url = fields
        .url
        .as_ref()
        .ok_or_else(|| table.error("a postgres output needs `url`"))?;
    let (url_text, mut tls) = Tls::from_url(url.get_ref())
        .map_err(|e| table.error_at(url.span(), "url", format!("invalid connection url: {e}")))?;
    let mut connection: postgres::Config = url_text
        .parse()
        .map_err(|e| table.error_at(url.span(), "url", format!("invalid connection url: {e}")))?;
    confine_connection(table, url, &connection, &mut tls)?;
    if let Some(password) = &fields.password {
        let password = table
            .secret(url.span(), "password", password)?
            .read("password")
            .map_err(|e| table.error(format!("postgres output: {e}")))?;
        connection.password(password);
    }
    connection.application_name("spate");
    connection.connect_timeout(
        fields
            .connect_timeout
            .map_or(Duration::from_secs(10), |i| i.0),
    );
    let target = table.required("table", &fields.table)?;
    let name = |text: &str, field: &str, span| {
        quote_qualified(text).map_err(|e| table.error_at(span, field, e))
    };
    let table_span = fields.table.as_ref().map_or(0..0, Spanned::span);
    let (job, tenant) = table.job_identity();
    let progress_name = fields
        .progress_table
        .unwrap_or_else(|| "spate_progress".into());
    let connections = match &fields.connections {
        None => 1,
        Some(n) if (1..=MAX_CONNECTIONS).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            return Err(table.error_at(
                n.span(),
                "connections",
                format!(
                    "`connections` must be 1 to {MAX_CONNECTIONS}, not {}",
                    n.get_ref()
                ),
            ));
        }
    };
    let output = PostgresOutput {
        server: server_name(&connection),
        table: name(target, "table", table_span.clone())?,
        table_name: target.clone(),
        mode: fields.mode.unwrap_or_default(),
        key_column: fields.key_column.unwrap_or_else(|| "key".into()),
        value_column: fields.value_column.unwrap_or_else(|| "value".into()),
        batch_time_column: fields.batch_time_column,
        create_table: fields.create_table.unwrap_or(false),
        progress_table: name(&progress_name, "progress-table", table_span)?,
        progress_name,
        job: format!("{tenant}.{job}"),
        retry_for: fields.retry_for.map_or(Duration::from_secs(120), |i| i.0),
        connections,
        connection,
        tls,
    };
    Ok(Box::new(output))
}

/// Under a policy: every server the url names is an endpoint the policy allows (no Unix
/// sockets: they are host files), and `sslrootcert` is inside the data root.
fn confine_connection(
    table: &ConnectorTable<'_>,
    url: &Spanned<String>,
    connection: &postgres::Config,
    tls: &mut Tls,
) -> Result<(), ConfigError> {
    use postgres::config::Host;
    if table.policy().is_none() {
        return Ok(());
    }
    let ports = connection.get_ports();
    let port_of = |i: usize| match ports {
        [] => 5432,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(5432),
    };
    let hosts = connection.get_hosts();
    if hosts.is_empty() && connection.get_hostaddrs().is_empty() {
        return Err(table.error_at(
            url.span(),
            "url",
            "name the server's host: under a policy the default (a local Unix socket) is not \
             reachable",
        ));
    }
    for (i, host) in hosts.iter().enumerate() {
        match host {
            Host::Tcp(name) => table.endpoint(url.span(), "url", name, port_of(i))?,
            Host::Unix(path) => {
                return Err(table.error_at(
                    url.span(),
                    "url",
                    format!(
                        "Unix socket {} is a host file: under a policy, connect by host:port",
                        path.display()
                    ),
                ));
            }
        }
    }
    for (i, address) in connection.get_hostaddrs().iter().enumerate() {
        table.endpoint(url.span(), "url", &address.to_string(), port_of(i))?;
    }
    if let Some(root_cert) = &tls.root_cert {
        let raw = Spanned::new(url.span(), root_cert.display().to_string());
        tls.root_cert = Some(table.host_path("url (sslrootcert)", &raw)?.into());
    }
    Ok(())
}

/// How far the server's certificate is checked: libpq's `sslmode` beyond `require`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    /// Not at all (`disable`, `prefer`, `require`: TLS against eavesdropping only).
    Nothing,
    /// Signed by a trusted CA (`verify-ca`).
    Ca,
    /// That, and issued for the host connected to (`verify-full`).
    Full,
}

/// The connection's TLS settings, read from the url as libpq reads them: `sslmode` (`disable`,
/// `prefer` (the default: TLS when the server offers it), `require`, `verify-ca`,
/// `verify-full`) and `sslrootcert` (the CA certificates to trust; libpq's default
/// `~/.postgresql/root.crt`). The postgres crate knows neither the verify modes nor
/// `sslrootcert`, so they are taken out of the url here and it gets `sslmode=require`.
#[derive(Clone, Debug)]
struct Tls {
    verify: Verify,
    root_cert: Option<std::path::PathBuf>,
}

impl Tls {
    /// The url without what the postgres crate cannot read, and the TLS settings.
    fn from_url(url: &str) -> Result<(String, Tls), String> {
        let mut tls = Tls {
            verify: Verify::Nothing,
            root_cert: None,
        };
        let mut take = |key: &str, value: &str| -> Result<Option<String>, String> {
            match (key, value) {
                ("sslmode", "verify-ca" | "verify-full") => {
                    tls.verify = match value {
                        "verify-ca" => Verify::Ca,
                        _ => Verify::Full,
                    };
                    Ok(Some("require".into()))
                }
                ("sslrootcert", path) => {
                    tls.root_cert = Some(path.into());
                    Ok(None)
                }
                (_, value) => Ok(Some(value.to_owned())),
            }
        };
        let url = if let Some((base, query)) = url
            .split_once('?')
            .filter(|_| url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                if let Some(value) = take(key, value)? {
                    kept.push(format!("{key}={value}"));
                }
            }
            match kept.is_empty() {
                true => base.to_owned(),
                false => format!("{base}?{}", kept.join("&")),
            }
        } else if url.contains('=') && !url.contains("://") {
            let mut kept = Vec::new();
            for pair in url.split_whitespace() {
                match pair.split_once('=') {
                    Some((key, value)) => {
                        if let Some(value) = take(key, value)? {
                            kept.push(format!("{key}={value}"));
                        }
                    }
                    None => kept.push(pair.to_owned()),
                }
            }
            kept.join(" ")
        } else {
            url.to_owned()
        };
        if tls.verify != Verify::Nothing && tls.root_cert.is_none() {
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            let default = home.map(|h| h.join(".postgresql/root.crt"));
            match default.filter(|path| path.is_file()) {
                Some(path) => tls.root_cert = Some(path),
                None => {
                    return Err(
                        "sslmode=verify-ca and verify-full need the CA certificates to \
                                trust: add sslrootcert=<file> to the url (libpq's default, \
                                ~/.postgresql/root.crt, is not there)"
                            .into(),
                    );
                }
            }
        }
        Ok((url, tls))
    }

    /// The TLS connector: it checks the server's certificate as `verify` says.
    fn connector(&self) -> Result<postgres_openssl::MakeTlsConnector> {
        use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
        let mut builder = SslConnector::builder(SslMethod::tls())
            .map_err(|e| anyhow!("cannot set up TLS: {e}"))?;
        match (&self.root_cert, self.verify) {
            (_, Verify::Nothing) => builder.set_verify(SslVerifyMode::NONE),
            (Some(path), _) => builder.set_ca_file(path).map_err(|e| {
                Permanent(anyhow!(
                    "cannot read the CA certificates in {} (sslrootcert): {e}",
                    path.display()
                ))
            })?,
            (None, _) => {}
        }
        let mut connector = postgres_openssl::MakeTlsConnector::new(builder.build());
        let full = self.verify == Verify::Full;
        connector.set_callback(move |config, _host| {
            config.set_verify_hostname(full);
            Ok(())
        });
        Ok(connector)
    }
}

/// `user@host:port/database` of a connection's settings.
fn server_name(config: &postgres::Config) -> String {
    use postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("?");
    let database = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{database}")
}

/// An identifier, quoted for SQL.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `name` or `schema.name`, quoted for SQL.
fn quote_qualified(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "'{text}' is not a table name: write `name` or `schema.name`"
        ));
    }
    Ok(parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join("."))
}

impl Output for PostgresOutput {
    fn describe(&self, stream: &str) -> String {
        let mode = match self.mode {
            Mode::Append => "append: every record a row, bulk-loaded with COPY",
            Mode::Upsert => "upsert: one row per key, its value replaced",
            Mode::Accumulate => "accumulate: one row per key, its value added to the row's",
        };
        let transactions = match self.connections {
            1 => "one transaction per batch with its marker".to_owned(),
            n => format!(
                "{n} connections, each writing its share of a batch in one transaction with its \
                 own marker"
            ),
        };
        format!(
            "postgres '{stream}' into table {} at {} ({mode}); exactly-once: {transactions} in \
             {}",
            self.table_name, self.server, self.progress_name
        )
    }

    fn replay(&self) -> Replay {
        Replay::Replaces
    }

    fn remembers_batch_times(&self) -> bool {
        true
    }

    fn accepts(&self, types: &StreamType) -> Result<(), String> {
        if self.mode.keyed() && types.key.is_none() {
            return Err(format!(
                "mode \"{}\" needs a keyed stream (one row per key); this stream has no key: \
                 use mode = \"append\", or a keyed step before the output",
                self.mode.name()
            ));
        }
        let numbers = matches!(types.value, Shape::Scalar(ValueType::I64 | ValueType::F64));
        if self.mode == Mode::Accumulate && !numbers {
            return Err(format!(
                "mode \"accumulate\" adds values, so it needs numbers (i64 or f64); this \
                 stream's values are {}",
                types.value
            ));
        }
        Ok(())
    }

    fn verify(&self, types: &StreamType) -> Result<Option<String>> {
        let mut client = self.connect()?;
        if self.create_table && table_oid(&mut client, &self.table)?.is_none() {
            // Nothing is created by a check: say what the start will create.
            return Ok(Some(format!(
                "table {} at {} does not exist yet; the job will create it: {}",
                self.table_name,
                self.server,
                self.create_statement(types)
            )));
        }
        let layout = self.layout(&mut client, types, false)?;
        let resume = self.resume(&mut client)?;
        Ok(Some(format!(
            "table {} at {}: {}; {}",
            self.table_name,
            self.server,
            layout.summary(),
            resume.summary()
        )))
    }

    fn open(&self, context: &OutputContext<'_>, types: &StreamType) -> Result<Box<dyn Sink>> {
        let began = Instant::now();
        let claim = claim_marker(self)?;
        let mut client = self.connect()?;
        self.create_progress_table(&mut client)?;
        let layout = self.layout(&mut client, types, self.create_table)?;
        let resume = self.resume(&mut client)?;
        if let Resume::Regrouped { from, through } = resume {
            self.regroup(&mut client, through)?;
            tracing::info!(
                "postgres output '{}': written by {from} connection(s) up to batch {through} ms, \
                 now by {}: their markers in {} start there",
                self.table_name,
                self.connections,
                self.progress_name
            );
        }
        tracing::info!(
            "postgres output '{}': ready in {} ms ({}); {}",
            self.table_name,
            began.elapsed().as_millis(),
            layout.summary(),
            resume.summary()
        );
        let statements = Statements::new(self, &layout);
        let mut clients = vec![client];
        for _ in 1..self.connections {
            clients.push(self.connect()?);
        }
        let lanes = clients
            .into_iter()
            .zip(resume.markers(self.connections))
            .enumerate()
            .map(|(task, (client, committed_through))| Lane {
                connection: Some(Connection {
                    output: self.clone(),
                    task: task as i32,
                    client: Some(client),
                    statements: statements.clone(),
                    gauges: context.gauges.clone(),
                }),
                in_flight: None,
                committed_through,
            })
            .collect();
        Ok(Box::new(Writer {
            output: self.clone(),
            _claim: claim,
            layout,
            lanes,
        }))
    }
}

impl PostgresOutput {
    fn connector(&self) -> String {
        format!("postgres output '{}'", self.table_name)
    }

    /// A new connection; the error says where it was trying to go.
    fn connect(&self) -> Result<Client> {
        let connector = self.tls.connector()?;
        self.connection.connect(connector).map_err(|e| {
            let text = e.to_string();
            let hint = match e.code() {
                Some(c) if *c == SqlState::INVALID_PASSWORD => {
                    ": are the user and `password` right?"
                }
                Some(c) if *c == SqlState::INVALID_CATALOG_NAME => ": does the database exist?",
                Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                    ": does the server's pg_hba.conf want TLS (`sslmode=require` in `url`)?"
                }
                Some(_) => "",
                None if text.contains("TLS") || text.contains("certificate") => {
                    ": check `sslmode` and `sslrootcert` in `url`"
                }
                None => ": is the server running, and is `url` right?",
            };
            let error = anyhow!(
                "cannot connect to PostgreSQL at {}: {}{hint}",
                self.server,
                message(&e)
            );
            match connection_lost(&e) {
                true => error,
                false => Permanent(error).into(),
            }
        })
    }

    fn create_progress_table(&self, client: &mut Client) -> Result<()> {
        if table_oid(client, &self.progress_table)?.is_some() {
            if self.has_tasks_column(client)? {
                return Ok(());
            }
            // A table made before outputs had several connections: each of its markers was
            // its output's only one.
            let sql = format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS tasks integer NOT NULL DEFAULT 1",
                self.progress_table
            );
            return client.batch_execute(&sql).map_err(|e| {
                anyhow!(
                    "cannot add column tasks to the progress table {}: {}",
                    self.progress_name,
                    message(&e)
                )
            });
        }
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (job text NOT NULL, output text NOT NULL, task \
             integer NOT NULL, batch_time bigint NOT NULL, batch_rows bigint NOT NULL, \
             committed_at timestamptz NOT NULL DEFAULT now(), tasks integer NOT NULL DEFAULT 1, \
             PRIMARY KEY (job, output, task))",
            self.progress_table
        );
        match client.batch_execute(&sql) {
            Ok(()) => Ok(()),
            // Two jobs creating it at once: one of them wins.
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(()),
            Err(e) => bail!(
                "cannot create the progress table {}: {}",
                self.progress_name,
                message(&e)
            ),
        }
    }

    /// Whether the progress table has its `tasks` column (tables made before it have not).
    fn has_tasks_column(&self, client: &mut Client) -> Result<bool> {
        let row = client.query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND \
             attname = 'tasks' AND NOT attisdropped)",
            &[&self.progress_table],
        )?;
        Ok(row.get(0))
    }

    /// Where each connection resumes, from the markers in the progress table (none if it is
    /// missing); an error if an earlier run with another number of connections stopped part
    /// way through a batch.
    fn resume(&self, client: &mut Client) -> Result<Resume> {
        if table_oid(client, &self.progress_table)?.is_none() {
            return Ok(Resume::Markers(vec![None; self.connections]));
        }
        let tasks = match self.has_tasks_column(client)? {
            true => "tasks",
            false => "1",
        };
        let sql = format!(
            "SELECT task, batch_time, {tasks} FROM {} WHERE job = $1 AND output = $2 ORDER BY \
             task",
            self.progress_table
        );
        let rows: Vec<MarkerRow> = client
            .query(&sql, &[&self.job, &self.table_name])
            .map_err(|e| anyhow!("cannot read {}: {}", self.progress_name, message(&e)))?
            .iter()
            .map(|r| MarkerRow {
                task: r.get(0),
                batch_time: r.get::<_, i64>(1).max(0) as u64,
                tasks: r.get(2),
            })
            .collect();
        resume(&rows, self.connections).map_err(|e| {
            Permanent(anyhow!(
                "table {}: {e}; or, if nothing is left to recover, delete them: DELETE FROM {} \
                 WHERE job = '{}' AND output = '{}'",
                self.table_name,
                self.progress_name,
                self.job,
                self.table_name
            ))
            .into()
        })
    }

    /// Sets one marker per connection at `through`, replacing the markers of an earlier run
    /// that wrote with another number of connections (each of which had written `through`).
    fn regroup(&self, client: &mut Client, through: u64) -> Result<()> {
        let failed =
            |e: postgres::Error| anyhow!("cannot update {}: {}", self.progress_name, message(&e));
        let mut transaction = client.transaction().map_err(failed)?;
        transaction
            .execute(
                &format!(
                    "DELETE FROM {} WHERE job = $1 AND output = $2",
                    self.progress_table
                ),
                &[&self.job, &self.table_name],
            )
            .map_err(failed)?;
        let insert = format!(
            "INSERT INTO {} (job, output, task, batch_time, batch_rows, tasks) VALUES ($1, $2, \
             $3, $4, 0, $5)",
            self.progress_table
        );
        for task in 0..self.connections as i32 {
            transaction
                .execute(
                    &insert,
                    &[
                        &self.job,
                        &self.table_name,
                        &task,
                        &(through as i64),
                        &(self.connections as i32),
                    ],
                )
                .map_err(failed)?;
        }
        transaction.commit().map_err(failed)
    }

    /// The columns written and their types, checked against the stream's types and the mode;
    /// with `create`, a missing table is created first. Every problem found is named.
    fn layout(&self, client: &mut Client, types: &StreamType, create: bool) -> Result<Layout> {
        let oid = match (table_oid(client, &self.table)?, create) {
            (Some(oid), _) => oid,
            (None, true) => {
                client
                    .batch_execute(&self.create_statement(types))
                    .map_err(|e| {
                        anyhow!("cannot create table {}: {}", self.table_name, message(&e))
                    })?;
                tracing::info!(
                    "postgres output: created table {} at {}",
                    self.table_name,
                    self.server
                );
                table_oid(client, &self.table)?
                    .ok_or_else(|| anyhow!("table {} vanished", self.table_name))?
            }
            (None, false) => {
                return Err(Permanent(anyhow!(
                    "table {} does not exist at {} (create it, or set create-table = true)",
                    self.table_name,
                    self.server
                ))
                .into());
            }
        };
        let rows = client.query(
            "SELECT attname::text, atttypid, format_type(atttypid, atttypmod), attnotnull, \
             atthasdef FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
            &[&oid],
        )?;
        let found: Vec<TableColumn> = rows
            .iter()
            .map(|r| TableColumn {
                name: r.get(0),
                type_: Type::from_oid(r.get(1)),
                type_name: r.get(2),
                required: r.get::<_, bool>(3) && !r.get::<_, bool>(4),
            })
            .collect();
        let mut problems = Vec::new();
        let mut column = |name: &str, shape: Option<&Shape>, role: &str| {
            let Some(c) = found.iter().find(|c| c.name == name) else {
                problems.push(format!(
                    "table {} has no column \"{name}\" (the {role} column)",
                    self.table_name
                ));
                return None;
            };
            let kind = c.type_.as_ref().and_then(Kind::of);
            let fits = match (shape, kind) {
                (Some(shape), Some(kind)) => kind.holds(shape),
                (None, Some(kind)) => matches!(kind, Kind::Time | Kind::BigInt),
                (_, None) => false,
            };
            if !fits {
                let wanted = match shape {
                    Some(shape) => format!("a {shape} needs {}", Kind::columns_for(shape)),
                    None => "the batch time needs timestamptz, timestamp or bigint".into(),
                };
                problems.push(format!(
                    "column \"{name}\" of table {} is {}: {wanted}",
                    self.table_name, c.type_name
                ));
                return None;
            }
            Some(Written {
                name: name.to_owned(),
                type_: c.type_.clone()?,
                kind: kind?,
            })
        };
        let key = types
            .key
            .as_ref()
            .and_then(|shape| column(&self.key_column, Some(shape), "key"));
        let value = column(&self.value_column, Some(&types.value), "value");
        let time = self
            .batch_time_column
            .as_ref()
            .and_then(|name| column(name, None, "batch time"));
        let written: Vec<&str> = [&key, &value, &time]
            .iter()
            .filter_map(|c| c.as_ref().map(|c| c.name.as_str()))
            .collect();
        for c in &found {
            if c.required && !written.contains(&c.name.as_str()) {
                problems.push(format!(
                    "column \"{}\" of table {} is NOT NULL without a default, and this output \
                     does not write it",
                    c.name, self.table_name
                ));
            }
        }
        if self.mode.keyed() && !self.key_is_unique(client, oid)? {
            problems.push(format!(
                "mode \"{}\" needs a unique index or primary key on exactly column \"{}\" of \
                 table {} (for ON CONFLICT)",
                self.mode.name(),
                self.key_column,
                self.table_name
            ));
        }
        if let (Mode::Accumulate, Some(v)) = (self.mode, &value)
            && !matches!(
                v.kind,
                Kind::BigInt
                    | Kind::Integer
                    | Kind::SmallInt
                    | Kind::Numeric
                    | Kind::Double
                    | Kind::Real
            )
        {
            problems.push(format!(
                "mode \"accumulate\" adds to column \"{}\", so it must be a number (bigint, \
                 integer, smallint, numeric, double precision or real)",
                v.name
            ));
        }
        if !problems.is_empty() {
            return Err(Permanent(anyhow!(
                "table {} at {} does not fit the stream: {}",
                self.table_name,
                self.server,
                problems.join("; ")
            ))
            .into());
        }
        Ok(Layout {
            key,
            value: value.ok_or_else(|| anyhow!("no value column"))?,
            time,
        })
    }

    fn key_is_unique(&self, client: &mut Client, oid: u32) -> Result<bool> {
        Ok(client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = \
                 i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = $1 AND i.indisunique \
                 AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname::text = $2)",
                &[&oid, &self.key_column],
            )?
            .get(0))
    }

    /// `CREATE TABLE` with the stream's types (the key a primary key in the keyed modes).
    fn create_statement(&self, types: &StreamType) -> String {
        let mut columns = Vec::new();
        if let Some(key) = &types.key {
            let unique = if self.mode.keyed() {
                " PRIMARY KEY"
            } else {
                ""
            };
            columns.push(format!(
                "{} {}{unique}",
                quote(&self.key_column),
                Kind::natural(key).sql()
            ));
        }
        columns.push(format!(
            "{} {}",
            quote(&self.value_column),
            Kind::natural(&types.value).sql()
        ));
        if let Some(time) = &self.batch_time_column {
            columns.push(format!("{} timestamptz", quote(time)));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            self.table,
            columns.join(", ")
        )
    }
}

/// The catalog id of table `quoted` (a quoted, maybe qualified, name), if it exists.
fn table_oid(client: &mut Client, quoted: &str) -> Result<Option<u32>> {
    Ok(client
        .query_one("SELECT to_regclass($1)::oid", &[&quoted])?
        .get(0))
}

/// A column of the table as the catalog describes it.
struct TableColumn {
    name: String,
    type_: Option<Type>,
    type_name: String,
    required: bool,
}

/// A column the output writes.
#[derive(Clone, Debug)]
struct Written {
    name: String,
    type_: Type,
    kind: Kind,
}

/// The columns written, in COPY order: key (if written), value, batch time (if asked).
#[derive(Debug)]
struct Layout {
    key: Option<Written>,
    value: Written,
    time: Option<Written>,
}

impl Layout {
    fn columns(&self) -> impl Iterator<Item = &Written> {
        self.key.iter().chain([&self.value]).chain(&self.time)
    }

    fn summary(&self) -> String {
        let columns: Vec<String> = self
            .columns()
            .map(|c| format!("{} {}", c.name, c.type_))
            .collect();
        format!("columns {}", columns.join(", "))
    }
}

/// The kinds of column a stream's values go into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    BigInt,
    Integer,
    SmallInt,
    Numeric,
    Double,
    Real,
    Bytea,
    Json,
    Time,
}

impl Kind {
    fn of(type_: &Type) -> Option<Kind> {
        Some(match *type_ {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Kind::Text,
            Type::INT8 => Kind::BigInt,
            Type::INT4 => Kind::Integer,
            Type::INT2 => Kind::SmallInt,
            Type::NUMERIC => Kind::Numeric,
            Type::FLOAT8 => Kind::Double,
            Type::FLOAT4 => Kind::Real,
            Type::BYTEA => Kind::Bytea,
            Type::JSONB | Type::JSON => Kind::Json,
            Type::TIMESTAMPTZ | Type::TIMESTAMP => Kind::Time,
            _ => return None,
        })
    }

    /// Whether values of `shape` go into this kind of column: scalars into their own type (or
    /// JSON), composites into JSON or text (as Spark prints them).
    fn holds(self, shape: &Shape) -> bool {
        match shape {
            Shape::Scalar(ValueType::Text) => matches!(self, Kind::Text | Kind::Json),
            Shape::Scalar(ValueType::I64) => matches!(
                self,
                Kind::BigInt | Kind::Integer | Kind::SmallInt | Kind::Numeric | Kind::Json
            ),
            Shape::Scalar(ValueType::F64) => {
                matches!(self, Kind::Double | Kind::Real | Kind::Numeric | Kind::Json)
            }
            Shape::Scalar(ValueType::Bytes) => self == Kind::Bytea,
            _ => matches!(self, Kind::Json | Kind::Text),
        }
    }

    /// The column types `holds` accepts for `shape`, in words.
    fn columns_for(shape: &Shape) -> &'static str {
        match shape {
            Shape::Scalar(ValueType::Text) => "text, varchar, char, jsonb or json",
            Shape::Scalar(ValueType::I64) => {
                "bigint, integer, smallint or numeric (or jsonb, json)"
            }
            Shape::Scalar(ValueType::F64) => "double precision, real or numeric (or jsonb, json)",
            Shape::Scalar(ValueType::Bytes) => "bytea",
            _ => "jsonb, json or text",
        }
    }

    /// The column kind `create-table` gives values of `shape`.
    fn natural(shape: &Shape) -> Kind {
        match shape {
            Shape::Scalar(ValueType::Text) => Kind::Text,
            Shape::Scalar(ValueType::I64) => Kind::BigInt,
            Shape::Scalar(ValueType::F64) => Kind::Double,
            Shape::Scalar(ValueType::Bytes) => Kind::Bytea,
            _ => Kind::Json,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::BigInt => "bigint",
            Kind::Integer => "integer",
            Kind::SmallInt => "smallint",
            Kind::Numeric => "numeric",
            Kind::Double => "double precision",
            Kind::Real => "real",
            Kind::Bytea => "bytea",
            Kind::Json => "jsonb",
            Kind::Time => "timestamptz",
        }
    }
}

/// One value as PostgreSQL receives it.
#[derive(Debug)]
enum Cell<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bytes(&'a [u8]),
    Json(serde_json::Value),
    /// Milliseconds since the Unix epoch.
    Time(u64),
}

impl Cell<'_> {
    /// Appends the cell as a field of COPY's text format. The text format, not the binary
    /// one: the server ingests it about 1.5 times as fast (`bench --only-postgres`: 42 ms
    /// against 65 ms per 200,000 (text, bigint) rows), and it is the same for every column
    /// type a kind covers.
    fn write_text(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = match self {
            Cell::Text(text) => {
                escape_copy_text(text.as_bytes(), out);
                Ok(())
            }
            Cell::Int(n) => {
                out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
                Ok(())
            }
            // Rust prints the shortest text that reads back as the same double; PostgreSQL
            // reads `NaN`, `inf` and `-inf`.
            Cell::Float(x) => write!(out, "{x}"),
            Cell::Bytes(bytes) => {
                // bytea's hex form, its backslash escaped for COPY.
                out.extend_from_slice(b"\\\\x");
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for byte in *bytes {
                    out.extend_from_slice(&[
                        HEX[usize::from(byte >> 4)],
                        HEX[usize::from(byte & 15)],
                    ]);
                }
                Ok(())
            }
            Cell::Json(json) => {
                escape_copy_text(json.to_string().as_bytes(), out);
                Ok(())
            }
            Cell::Time(ms) => {
                let time = UNIX_EPOCH + Duration::from_millis(*ms);
                write!(out, "{}", humantime::format_rfc3339_millis(time))
            }
        };
    }
}

/// Appends `text` with the characters COPY's text format gives a meaning escaped.
fn escape_copy_text(text: &[u8], out: &mut Vec<u8>) {
    let special = |byte: &u8| matches!(byte, b'\\' | b'\t' | b'\n' | b'\r');
    // Nearly every value has none of them: copied whole.
    if !text.iter().any(special) {
        out.extend_from_slice(text);
        return;
    }
    for &byte in text {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(byte),
        }
    }
}

/// Rows being encoded in COPY's text format.
struct CopyText<'a> {
    out: Vec<u8>,
    /// The batch time's cell, when the table has a column for it.
    time: Option<Cell<'a>>,
    /// Rows encoded so far.
    rows: usize,
}

impl CopyText<'_> {
    /// Appends a row: key (if written), value, batch time (if written).
    fn row(&mut self, key: Option<&Cell<'_>>, value: &Cell<'_>) {
        if let Some(key) = key {
            key.write_text(&mut self.out);
            self.out.push(b'\t');
        }
        value.write_text(&mut self.out);
        if let Some(time) = &self.time {
            self.out.push(b'\t');
            time.write_text(&mut self.out);
        }
        self.out.push(b'\n');
        self.rows += 1;
    }
}

/// The value of shape `shape` as a cell of a `kind` column.
fn cell<'a>(bytes: &'a [u8], shape: &Shape, kind: Kind) -> Result<Cell<'a>, String> {
    let utf8 = |bytes: &'a [u8]| {
        std::str::from_utf8(bytes).map_err(|e| format!("text that is not UTF-8 ({e})"))
    };
    let fixed = |bytes: &[u8]| {
        <[u8; 8]>::try_from(bytes).map_err(|_| format!("{} bytes for a number", bytes.len()))
    };
    Ok(match (shape, kind) {
        (Shape::Scalar(ValueType::Text), Kind::Text) => Cell::Text(Cow::Borrowed(utf8(bytes)?)),
        (Shape::Scalar(ValueType::Text), Kind::Json) => Cell::Json(
            serde_json::from_str(utf8(bytes)?)
                .map_err(|e| format!("text that is not JSON ({e})"))?,
        ),
        (Shape::Scalar(ValueType::I64), Kind::BigInt | Kind::Numeric) => {
            Cell::Int(i64::from_le_bytes(fixed(bytes)?))
        }
        (Shape::Scalar(ValueType::I64), Kind::Integer | Kind::SmallInt) => {
            let n = i64::from_le_bytes(fixed(bytes)?);
            let fits = match kind {
                Kind::Integer => i32::try_from(n).is_ok(),
                _ => i16::try_from(n).is_ok(),
            };
            if !fits {
                return Err(format!("{n} does not fit a column of type {}", kind.sql()));
            }
            Cell::Int(n)
        }
        (Shape::Scalar(ValueType::F64), Kind::Double | Kind::Real | Kind::Numeric) => {
            Cell::Float(f64::from_le_bytes(fixed(bytes)?))
        }
        (Shape::Scalar(ValueType::Bytes), Kind::Bytea) => Cell::Bytes(bytes),
        (_, Kind::Json) => Cell::Json(json_value(bytes, shape)),
        (_, Kind::Text) => {
            let mut text = String::new();
            write_value(&mut text, bytes, shape);
            Cell::Text(Cow::Owned(text))
        }
        (_, kind) => return Err(format!("no {kind:?} column for this value")),
    })
}

/// The batch time as a cell of a `kind` column.
fn time_cell(batch_time_ms: u64, kind: Kind) -> Cell<'static> {
    match kind {
        Kind::BigInt => Cell::Int(batch_time_ms as i64),
        _ => Cell::Time(batch_time_ms),
    }
}

/// The SQL a writer runs, made once from the layout.
#[derive(Clone)]
struct Statements {
    /// Moves the marker forward; touches no row if the batch was written.
    mark: String,
    /// COPY into the table (append) or the staging table (upsert, accumulate).
    copy: String,
    /// Creates the staging table (dropped at commit).
    stage: Option<String>,
    /// Merges the staging table into the table.
    merge: Option<String>,
}

impl Statements {
    fn new(output: &PostgresOutput, layout: &Layout) -> Statements {
        let names: Vec<String> = layout.columns().map(|c| quote(&c.name)).collect();
        let list = names.join(", ");
        let mark = format!(
            "INSERT INTO {0} AS p (job, output, task, batch_time, batch_rows, tasks) VALUES ($1, \
             $2, $3, $4, $5, $6) ON CONFLICT (job, output, task) DO UPDATE SET batch_time = \
             EXCLUDED.batch_time, batch_rows = EXCLUDED.batch_rows, tasks = EXCLUDED.tasks, \
             committed_at = now() WHERE p.batch_time < EXCLUDED.batch_time",
            output.progress_table
        );
        if !output.mode.keyed() {
            return Statements {
                mark,
                copy: format!("COPY {} ({list}) FROM STDIN", output.table),
                stage: None,
                merge: None,
            };
        }
        let key = quote(&output.key_column);
        let value = quote(&output.value_column);
        let mut updates = vec![match output.mode {
            Mode::Accumulate => format!("{value} = coalesce(t.{value}, 0) + EXCLUDED.{value}"),
            _ => format!("{value} = EXCLUDED.{value}"),
        }];
        if let Some(time) = &layout.time {
            let time = quote(&time.name);
            updates.push(format!("{time} = EXCLUDED.{time}"));
        }
        Statements {
            mark,
            copy: format!("COPY spate_stage ({list}) FROM STDIN"),
            stage: Some(format!(
                "CREATE TEMPORARY TABLE spate_stage ON COMMIT DROP AS SELECT {list} FROM {} \
                 WITH NO DATA",
                output.table
            )),
            merge: Some(format!(
                "INSERT INTO {} AS t ({list}) SELECT {list} FROM spate_stage ON CONFLICT ({key}) \
                 DO UPDATE SET {}",
                output.table,
                updates.join(", ")
            )),
        }
    }
}

/// A marker in the progress table: connection `task` of `tasks` wrote batches up to
/// `batch_time`.
struct MarkerRow {
    task: i32,
    batch_time: u64,
    tasks: i32,
}

/// Where an output's connections resume, from the markers an earlier run left.
#[derive(Debug, PartialEq)]
enum Resume {
    /// Connection `i` has written batches up to `.0[i]` (none: no batch yet).
    Markers(Vec<Option<u64>>),
    /// The earlier run wrote with `from` connections, each of which wrote batch `through` and
    /// none a later one: every connection now starts there.
    Regrouped { from: usize, through: u64 },
}

impl Resume {
    /// Each connection's last batch written, out of `connections`.
    fn markers(&self, connections: usize) -> Vec<Option<u64>> {
        match self {
            Resume::Markers(markers) => markers.clone(),
            Resume::Regrouped { through, .. } => vec![Some(*through); connections],
        }
    }

    /// What it says of the batches written, for the log and `spate check --connect`.
    fn summary(&self) -> String {
        match self {
            Resume::Markers(markers) => match markers.iter().flatten().max() {
                None => "no batch written yet".into(),
                Some(last) if markers.iter().all(|m| m == &Some(*last)) => {
                    format!("batches up to {last} ms are written")
                }
                Some(_) => {
                    let each: Vec<String> = markers
                        .iter()
                        .map(|m| m.map_or("none".into(), |t| format!("{t} ms")))
                        .collect();
                    format!("batches written per connection up to {}", each.join(", "))
                }
            },
            Resume::Regrouped { from, through } => {
                format!("batches up to {through} ms are written (by {from} connection(s))")
            }
        }
    }
}

/// Where `connections` connections resume from the markers `rows` of an earlier run. A record
/// goes to a connection by a hash, so with another number of connections a batch would be
/// shared out differently: a batch some old connections wrote and others did not could then
/// not be finished without writing some of its records twice or never; that case is an error.
fn resume(rows: &[MarkerRow], connections: usize) -> Result<Resume, String> {
    let Some(first) = rows.first() else {
        return Ok(Resume::Markers(vec![None; connections]));
    };
    let from = first.tasks;
    let consistent = rows
        .iter()
        .all(|r| r.tasks == from && (0..from).contains(&r.task));
    if !consistent {
        let tasks: Vec<String> = rows
            .iter()
            .map(|r| format!("{} of {}", r.task, r.tasks))
            .collect();
        return Err(format!(
            "its markers in the progress table do not belong together (connections {})",
            tasks.join(", ")
        ));
    }
    if from as usize == connections {
        let mut markers = vec![None; connections];
        for row in rows {
            markers[row.task as usize] = Some(row.batch_time);
        }
        return Ok(Resume::Markers(markers));
    }
    let through = first.batch_time;
    if rows.len() == from as usize && rows.iter().all(|r| r.batch_time == through) {
        return Ok(Resume::Regrouped {
            from: from as usize,
            through,
        });
    }
    let each: Vec<String> = rows
        .iter()
        .map(|r| format!("connection {} up to {} ms", r.task, r.batch_time))
        .collect();
    Err(format!(
        "an earlier run writing with `connections = {from}` stopped part way through a batch \
         ({}; the others none), and with `connections = {connections}` its records would be \
         shared out differently: run the job with `connections = {from}` until it is \
         recovered, then change it",
        each.join(", ")
    ))
}

/// Claims the output's markers (server, progress table, job, output) for one writer.
fn claim_marker(output: &PostgresOutput) -> Result<Claim> {
    Claim::take(format!(
        "postgres marker {} {} {} {}",
        output.server, output.progress_table, output.job, output.table_name
    ))
    .map_err(|_| {
        Permanent(anyhow!(
            "another output of job '{}' writes table {} at {} with the same marker in {}: \
             give one of them its own `progress-table`",
            output.job,
            output.table_name,
            output.server,
            output.progress_name
        ))
        .into()
    })
}

/// One task's writer. A batch is encoded (COPY's text format) on the runner's thread, then
/// written by a thread of its own while the job computes the next batch: the server's ingest
/// and Spate's batch work overlap. The next `write` (or `sync`) waits for it first, so at most
/// one batch is in flight, batches commit in order, and a failure is reported before anything
/// later is written.
///
/// With several connections (`connections`), each record goes to one of them by a hash (of
/// its key in upsert and accumulate, so a key's rows are always written by one connection in
/// batch order; of the record in append), and each connection writes its share of the batch
/// in a transaction of its own with a marker of its own, on a thread of its own: a server
/// spreads the work of several connections over its cores. The hash makes the shares of a
/// replayed batch the same as the first time, so each connection's marker says exactly which
/// records it wrote.
struct Writer {
    output: PostgresOutput,
    /// This writer's markers, which no other writer of the process may use.
    _claim: Claim,
    layout: Layout,
    /// One per connection, in task order.
    lanes: Vec<Lane>,
}

/// One connection of a writer and the share of a batch it is writing.
struct Lane {
    /// The connection, when no batch is in flight (the batch's thread holds it meanwhile).
    connection: Option<Connection>,
    /// The batch being written and its thread, which hands the connection back.
    in_flight: Option<(u64, InFlight)>,
    /// Batches up to this time are written (read from the marker at open).
    committed_through: Option<u64>,
}

/// A batch's writing thread: it returns the connection and what the write did.
type InFlight = std::thread::JoinHandle<(Connection, Result<Outcome>)>;

/// A writer's connection and the SQL it runs.
struct Connection {
    output: PostgresOutput,
    /// Its task in the progress table: `0..connections`.
    task: i32,
    /// None after it was lost, until the next try reconnects.
    client: Option<Client>,
    statements: Statements,
    /// Where retries are counted.
    gauges: Arc<OutputGauges>,
}

/// What a try at a batch did.
enum Outcome {
    Written(usize),
    WrittenBefore,
}

impl Writer {
    /// The batch's rows in COPY's text format (key, value, batch time per line), one share per
    /// connection, and how many rows each has: every record in append mode; one row per key
    /// otherwise (the last value for upsert, the sum for accumulate). Records are encoded
    /// straight from the partitions' columns, with no row list between: this runs on the job's
    /// thread for every record, and a list of rows cost more than the encoding
    /// (`bench --only-postgres`).
    fn encode<'a>(
        &self,
        time_ms: u64,
        partitions: &'a [Partition],
        types: &StreamType,
    ) -> Result<Vec<(Vec<u8>, usize)>, String> {
        let key_kind = self.layout.key.as_ref().map(|k| k.kind);
        let value_kind = self.layout.value.kind;
        let key_shape = types.key.as_ref();
        let records = partitions.iter().flat_map(|p| p.records());
        let named = |key: Option<&[u8]>, e: String| match (key, key_shape) {
            (Some(key), Some(shape)) => {
                let mut text = String::new();
                write_value(&mut text, key, shape);
                format!("record with key '{}': {e}", text.escape_debug())
            }
            _ => format!("record: {e}"),
        };
        let key_cell = |key: Option<&'a [u8]>| -> Result<Option<Cell<'a>>, String> {
            match (key, key_shape, key_kind) {
                (Some(bytes), Some(shape), Some(kind)) => cell(bytes, shape, kind)
                    .map(Some)
                    .map_err(|e| named(key, format!("key: {e}"))),
                _ => Ok(None),
            }
        };
        let lanes = self.lanes.len();
        let bytes: usize = partitions.iter().map(partition_bytes).sum();
        let mut shares: Vec<CopyText> = (0..lanes)
            .map(|_| CopyText {
                out: Vec::with_capacity((bytes + bytes / 2) / lanes + 64),
                time: self
                    .layout
                    .time
                    .as_ref()
                    .map(|c| time_cell(time_ms, c.kind)),
                rows: 0,
            })
            .collect();
        // The hash is taken only when there is more than one share.
        let share_of = |hash: &dyn Fn() -> u64| match lanes {
            1 => 0,
            n => partition_of(hash(), n),
        };
        if !self.output.mode.keyed() {
            for record in records {
                let value = cell(record.value, &types.value, value_kind)
                    .map_err(|e| named(record.key, format!("value: {e}")))?;
                let share = share_of(&|| record_hash(record.key, record.value));
                shares[share].row(key_cell(record.key)?.as_ref(), &value);
            }
        } else {
            // One entry per key, in the order keys first appear.
            let accumulate = self.output.mode == Mode::Accumulate;
            let mut index: HashMap<&[u8], usize> = HashMap::new();
            let mut combined: Vec<(&'a [u8], Cell<'a>)> = Vec::new();
            for record in records {
                let key = record.key.unwrap_or_default();
                let value = cell(record.value, &types.value, value_kind)
                    .map_err(|e| named(record.key, format!("value: {e}")))?;
                match index.get(key) {
                    Some(&i) if accumulate => {
                        let sum = std::mem::replace(&mut combined[i].1, Cell::Int(0));
                        combined[i].1 = add(sum, value).map_err(|e| named(record.key, e))?;
                    }
                    Some(&i) => combined[i].1 = value,
                    None => {
                        index.insert(key, combined.len());
                        combined.push((key, value));
                    }
                }
            }
            for (key, value) in &combined {
                let share = share_of(&|| hash_key(key));
                shares[share].row(key_cell(Some(key))?.as_ref(), value);
            }
        }
        Ok(shares.into_iter().map(|c| (c.out, c.rows)).collect())
    }

    /// Waits for the batch in flight on every connection: the first failure is this call's.
    fn finish_in_flight(&mut self) -> Result<()> {
        let several = self.lanes.len() > 1;
        let mut failure = None;
        for (task, lane) in self.lanes.iter_mut().enumerate() {
            let who = match several {
                true => format!(" (connection {task})"),
                false => String::new(),
            };
            if let Err(e) = lane.finish(&self.output, &who) {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// The hash that gives an appended record its connection: of its key and value, so that
/// equal records, which need not be told apart, go to the same one.
fn record_hash(key: Option<&[u8]>, value: &[u8]) -> u64 {
    let value = hash_key(value);
    key.map_or(value, |key| hash_key(key).rotate_left(29) ^ value)
}

impl Lane {
    /// Starts writing `rows` rows (encoded in `copy`) of batch `time_ms` on a thread.
    fn start(&mut self, time_ms: u64, copy: Vec<u8>, rows: usize) -> Result<()> {
        let mut connection = self
            .connection
            .take()
            .ok_or_else(|| host_fault("a postgres writer lost its connection".to_owned()))?;
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("spate-postgres".into())
            .spawn(move || {
                let _entered = span.enter();
                let outcome = connection.write(time_ms, &copy, rows);
                (connection, outcome)
            })
            .map_err(|e| anyhow!("cannot start a thread: {e}"))?;
        self.in_flight = Some((time_ms, thread));
        Ok(())
    }

    /// Waits for the batch in flight, if any: its failure is this call's. `who` names the
    /// connection in the log when there are several.
    fn finish(&mut self, output: &PostgresOutput, who: &str) -> Result<()> {
        let Some((time_ms, thread)) = self.in_flight.take() else {
            return Ok(());
        };
        let (connection, outcome) = thread.join().map_err(|_| {
            host_fault(format!(
                "the thread writing batch {time_ms} ms into table {}{who} panicked",
                output.table_name
            ))
        })?;
        self.connection = Some(connection);
        match outcome? {
            Outcome::Written(rows) => tracing::debug!(
                "postgres output '{}': batch {time_ms} ms: {rows} rows{who}",
                output.table_name
            ),
            Outcome::WrittenBefore => tracing::info!(
                "postgres output '{}': batch {time_ms} ms was already written{who} (its marker \
                 is in {}); not written again",
                output.table_name,
                output.progress_name
            ),
        }
        self.committed_through = Some(time_ms);
        Ok(())
    }

    /// Whether batch `time_ms` is at or before this connection's marker.
    fn wrote(&self, time_ms: u64) -> bool {
        self.committed_through.is_some_and(|t| time_ms <= t)
    }
}

impl Connection {
    /// Writes batch `time_ms` (`rows` rows, encoded in `copy`), trying again with backoff
    /// while the server is away.
    fn write(&mut self, time_ms: u64, copy: &[u8], rows: usize) -> Result<Outcome> {
        let connector = self.output.connector();
        let retry_for = self.output.retry_for;
        let gauges = self.gauges.clone();
        retrying(
            &gauges,
            &connector,
            &format!("writing batch {time_ms} ms"),
            retry_for,
            || self.write_once(time_ms, copy, rows),
        )
    }

    /// One try at writing the batch, in one transaction with its marker.
    fn write_once(&mut self, time_ms: u64, copy: &[u8], rows: usize) -> Result<Outcome> {
        let client = match &mut self.client {
            Some(client) if !client.is_closed() => client,
            _ => {
                self.client = None;
                self.client.insert(self.output.connect()?)
            }
        };
        let result = write_transaction(
            client,
            &self.output,
            &self.statements,
            self.task,
            time_ms,
            (copy, rows),
        );
        result.map_err(|failure| {
            let e = match failure {
                Failure::Sending(e) => {
                    self.client = None;
                    return anyhow!("sending the rows: {e}");
                }
                Failure::Server(e) => e,
            };
            if connection_lost(&e) {
                self.client = None;
                anyhow!("{}", message(&e))
            } else {
                Permanent(anyhow!(
                    "batch {time_ms} ms was refused by table {} (nothing of it was written): {}",
                    self.output.table_name,
                    message(&e)
                ))
                .into()
            }
        })
    }
}

/// Why a try at writing a batch failed.
enum Failure {
    /// The server's answer (or the client's, about the connection).
    Server(postgres::Error),
    /// The rows could not be sent (the connection broke during COPY).
    Sending(std::io::Error),
}

impl From<postgres::Error> for Failure {
    fn from(error: postgres::Error) -> Self {
        Failure::Server(error)
    }
}

/// The batch (connection `task`'s share of it) in one transaction: the marker moved first (a
/// batch written before stops here), then the rows (`copy`, `rows` of them) by COPY, merged into the table for upsert and
/// accumulate.
fn write_transaction(
    client: &mut Client,
    output: &PostgresOutput,
    statements: &Statements,
    task: i32,
    time_ms: u64,
    (copy, rows): (&[u8], usize),
) -> Result<Outcome, Failure> {
    let mut transaction = client.transaction()?;
    let moved = transaction.execute(
        &statements.mark,
        &[
            &output.job,
            &output.table_name,
            &task,
            &(time_ms as i64),
            &(rows as i64),
            &(output.connections as i32),
        ],
    )?;
    if moved == 0 {
        // Dropping the transaction rolls it back.
        return Ok(Outcome::WrittenBefore);
    }
    if let Some(stage) = &statements.stage {
        transaction.batch_execute(stage)?;
    }
    copy_rows(&mut transaction, &statements.copy, copy)?;
    if let Some(merge) = &statements.merge {
        transaction.execute(merge, &[])?;
    }
    transaction.commit()?;
    Ok(Outcome::Written(rows))
}

/// Bulk-loads the encoded rows with COPY, sent in chunks.
fn copy_rows(transaction: &mut Transaction<'_>, copy: &str, rows: &[u8]) -> Result<(), Failure> {
    use std::io::Write;
    const CHUNK: usize = 256 * 1024;
    let mut sink = transaction.copy_in(copy)?;
    let sent = rows
        .chunks(CHUNK)
        .try_for_each(|chunk| sink.write_all(chunk));
    // After a failed send, the server's own error (from `finish`) says more, if it has one.
    match (sent, sink.finish()) {
        (_, Err(e)) => Err(Failure::Server(e)),
        (Err(e), Ok(_)) => Err(Failure::Sending(e)),
        (Ok(()), Ok(_)) => Ok(()),
    }
}

/// `sum` plus `value` (numbers of one type), checked for overflow.
fn add<'a>(sum: Cell<'a>, value: Cell<'a>) -> Result<Cell<'a>, String> {
    match (sum, value) {
        (Cell::Int(sum), Cell::Int(value)) => sum
            .checked_add(value)
            .map(Cell::Int)
            .ok_or_else(|| "the sum of the batch's values overflows a bigint".to_owned()),
        (Cell::Float(sum), Cell::Float(value)) => Ok(Cell::Float(sum + value)),
        (sum, value) => Err(format!("cannot add {value:?} to {sum:?}")),
    }
}

impl Sink for Writer {
    fn write(&mut self, time_ms: u64, partitions: &[Partition], types: &StreamType) -> Result<()> {
        if self.lanes.iter().all(|lane| lane.wrote(time_ms)) {
            tracing::info!(
                "postgres output '{}': batch {time_ms} ms was written before the restart; not \
                 written again",
                self.output.table_name
            );
            return Ok(());
        }
        let shares = self.encode(time_ms, partitions, types).map_err(|e| {
            anyhow!(
                "batch {time_ms} ms cannot go into table {}: {e} (nothing of it was written)",
                self.output.table_name
            )
        })?;
        self.finish_in_flight()?;
        for (task, (lane, (copy, rows))) in self.lanes.iter_mut().zip(shares).enumerate() {
            if lane.wrote(time_ms) {
                tracing::info!(
                    "postgres output '{}': connection {task}'s share of batch {time_ms} ms was \
                     written before the restart; not written again",
                    self.output.table_name
                );
                continue;
            }
            lane.start(time_ms, copy, rows)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.finish_in_flight()
    }

    fn pending(&self) -> bool {
        self.lanes.iter().any(|lane| lane.in_flight.is_some())
    }

    fn written_through(&self) -> Option<u64> {
        self.lanes
            .iter()
            .filter_map(|lane| lane.committed_through)
            .max()
    }
}

/// Whether `error` is the connection going away (worth reconnecting and trying again), not
/// something the statement did.
fn connection_lost(error: &postgres::Error) -> bool {
    if let Some(code) = error.code() {
        let code = code.code();
        return code.starts_with("08")
            || matches!(
                code,
                "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
            );
    }
    if error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    error.to_string().contains("timeout")
}

/// A PostgreSQL error as one line: the server's message with its detail, the constraint, and
/// the SQLSTATE code; a client-side error as the client words it.
fn message(error: &postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        // The client's wording, then its causes (a TLS handshake's says what failed).
        let mut text = error.to_string();
        let mut cause = std::error::Error::source(error);
        while let Some(e) = cause {
            let said = e.to_string();
            if !text.contains(&said) {
                let _ = write!(text, ": {said}");
            }
            cause = e.source();
        }
        return text;
    };
    let mut text = format!("{}: {}", db.severity(), db.message());
    if let Some(detail) = db.detail() {
        let _ = write!(text, " ({detail})");
    }
    if let Some(constraint) = db.constraint() {
        let _ = write!(text, " [constraint {constraint}]");
    }
    let _ = write!(text, " [SQLSTATE {}]", db.code().code());
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_bad_ones_refused() {
        assert_eq!(quote_qualified("counts").unwrap(), "\"counts\"");
        assert_eq!(quote_qualified("app.Counts").unwrap(), "\"app\".\"Counts\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert!(quote_qualified("a.b.c").is_err());
        assert!(quote_qualified("a.").is_err());
    }

    #[test]
    fn values_become_cells_of_their_column_kind() {
        let seven = 7i64.to_le_bytes();
        assert!(matches!(
            cell(&seven, &Shape::I64, Kind::BigInt),
            Ok(Cell::Int(7))
        ));
        assert!(matches!(
            cell(b"word", &Shape::TEXT, Kind::Text),
            Ok(Cell::Text(t)) if t == "word"
        ));
        assert!(
            cell(b"\xff", &Shape::TEXT, Kind::Text)
                .unwrap_err()
                .contains("UTF-8")
        );
        assert!(
            cell(b"{not json", &Shape::TEXT, Kind::Json)
                .unwrap_err()
                .contains("JSON")
        );
        let mut list = Vec::new();
        spate_guest::nested::push_item(&mut list, Some(&seven));
        let shape = Shape::list(Shape::I64);
        assert!(matches!(
            cell(&list, &shape, Kind::Json),
            Ok(Cell::Json(j)) if j == serde_json::json!([7])
        ));
        assert!(matches!(
            cell(&list, &shape, Kind::Text),
            Ok(Cell::Text(t)) if t == "[7]"
        ));
    }

    #[test]
    fn numbers_go_into_narrower_columns_only_when_they_fit() {
        let small = 30_000i64.to_le_bytes();
        let large = 40_000i64.to_le_bytes();
        assert!(matches!(
            cell(&small, &Shape::I64, Kind::SmallInt),
            Ok(Cell::Int(30_000))
        ));
        assert_eq!(
            cell(&large, &Shape::I64, Kind::SmallInt).unwrap_err(),
            "40000 does not fit a column of type smallint"
        );
        assert!(cell(&large, &Shape::I64, Kind::Integer).is_ok());
        let huge = i64::MAX.to_le_bytes();
        assert!(cell(&huge, &Shape::I64, Kind::Integer).is_err());
        assert!(matches!(
            cell(&huge, &Shape::I64, Kind::Numeric),
            Ok(Cell::Int(i64::MAX))
        ));
        let half = 0.5f64.to_le_bytes();
        for kind in [Kind::Real, Kind::Numeric, Kind::Double] {
            assert!(matches!(cell(&half, &Shape::F64, kind), Ok(Cell::Float(x)) if x == 0.5));
        }
        assert!(!Kind::Integer.holds(&Shape::F64));
        assert!(!Kind::Real.holds(&Shape::I64));
    }

    #[test]
    fn cells_are_written_in_copys_text_format() {
        let text = |cell: Cell<'_>| {
            let mut out = Vec::new();
            cell.write_text(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(Cell::Text("a\tb\\c\nd".into())), "a\\tb\\\\c\\nd");
        assert_eq!(text(Cell::Text("plain text".into())), "plain text");
        assert_eq!(text(Cell::Text("\r".into())), "\\r");
        assert_eq!(text(Cell::Int(-42)), "-42");
        assert_eq!(text(Cell::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(text(Cell::Float(0.1)), "0.1");
        assert_eq!(text(Cell::Float(f64::NEG_INFINITY)), "-inf");
        assert_eq!(text(Cell::Bytes(&[0, 255, 16])), "\\\\x00ff10");
        assert_eq!(
            text(Cell::Json(serde_json::json!({"k": "a\nb"}))),
            "{\"k\":\"a\\\\nb\"}"
        );
        assert_eq!(text(Cell::Time(1_000)), "1970-01-01T00:00:01.000Z");
    }

    #[test]
    fn column_types_fit_the_stream_types_they_can_hold() {
        assert!(Kind::BigInt.holds(&Shape::I64));
        assert!(!Kind::Text.holds(&Shape::I64));
        assert!(!Kind::Double.holds(&Shape::I64));
        assert!(Kind::Json.holds(&Shape::list(Shape::TEXT)));
        assert!(!Kind::Bytea.holds(&Shape::TEXT));
        for shape in [Shape::TEXT, Shape::I64, Shape::list(Shape::I64)] {
            assert!(Kind::natural(&shape).holds(&shape));
        }
    }

    #[test]
    fn accumulated_sums_are_checked_for_overflow() {
        assert!(matches!(add(Cell::Int(2), Cell::Int(1)), Ok(Cell::Int(3))));
        assert!(add(Cell::Int(i64::MAX), Cell::Int(1)).is_err());
        assert!(matches!(
            add(Cell::Float(0.5), Cell::Float(1.0)),
            Ok(Cell::Float(1.5))
        ));
    }

    fn markers(rows: &[(i32, u64, i32)]) -> Vec<MarkerRow> {
        rows.iter()
            .map(|&(task, batch_time, tasks)| MarkerRow {
                task,
                batch_time,
                tasks,
            })
            .collect()
    }

    #[test]
    fn connections_resume_from_their_own_markers_while_their_number_stays() {
        assert_eq!(resume(&[], 2), Ok(Resume::Markers(vec![None, None])));
        // A run stopped after connection 1 wrote batch 3000 and before connection 0 did.
        let rows = markers(&[(0, 2000, 2), (1, 3000, 2)]);
        assert_eq!(
            resume(&rows, 2),
            Ok(Resume::Markers(vec![Some(2000), Some(3000)]))
        );
        // A run stopped during its first batch: connection 1 has no marker yet.
        let rows = markers(&[(0, 1000, 2)]);
        assert_eq!(
            resume(&rows, 2),
            Ok(Resume::Markers(vec![Some(1000), None]))
        );
        // A marker left by a version with one connection and no `tasks` column reads as 1.
        let rows = markers(&[(0, 1000, 1)]);
        assert_eq!(resume(&rows, 1), Ok(Resume::Markers(vec![Some(1000)])));
    }

    #[test]
    fn another_number_of_connections_starts_where_every_old_one_finished_or_is_refused() {
        let finished = markers(&[(0, 5000, 2), (1, 5000, 2)]);
        let regrouped = Resume::Regrouped {
            from: 2,
            through: 5000,
        };
        assert_eq!(resume(&finished, 3), Ok(regrouped));
        assert_eq!(resume(&finished, 1).unwrap().markers(1), vec![Some(5000)]);
        assert_eq!(
            resume(&markers(&[(0, 5000, 1)]), 4).unwrap().markers(4),
            vec![Some(5000); 4]
        );
        // Part way through a batch: connection 1 wrote 6000, connection 0 did not.
        let partial = resume(&markers(&[(0, 5000, 2), (1, 6000, 2)]), 1).unwrap_err();
        assert!(partial.contains("`connections = 2`"), "{partial}");
        assert!(partial.contains("connection 1 up to 6000 ms"), "{partial}");
        // Connection 1 of 2 never wrote: its share of batch 5000 is not known to be written.
        assert!(resume(&markers(&[(0, 5000, 2)]), 1).is_err());
        // Markers that do not belong together are not guessed at.
        let mixed = resume(&markers(&[(0, 5000, 2), (1, 5000, 3)]), 2).unwrap_err();
        assert!(mixed.contains("1 of 3"), "{mixed}");
        assert!(resume(&markers(&[(2, 5000, 2)]), 2).is_err());
    }

    #[test]
    fn appended_records_go_to_connections_by_their_content() {
        let share = |key: Option<&[u8]>, value: &[u8]| partition_of(record_hash(key, value), 4);
        // Equal records share a connection, whatever partition or order they come in.
        assert_eq!(share(None, b"alpha"), share(None, b"alpha"));
        assert_eq!(share(Some(b"k"), b"v"), share(Some(b"k"), b"v"));
        // And records spread over every connection.
        let used: std::collections::BTreeSet<usize> = (0..200u32)
            .map(|i| share(None, i.to_string().as_bytes()))
            .collect();
        assert_eq!(used.len(), 4);
    }
}
