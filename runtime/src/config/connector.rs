//! The tables of sources and outputs, for the connector a table's `type` names: the config
//! knows no connector's fields. Each connector declares its fields as a serde struct in its own
//! module and reads them with [`ConnectorTable::fields`], which refuses fields the struct does
//! not have (naming the ones it does) and keeps every field's line for errors.

use super::{ConfigError, Pipeline, Policy, line_column, short_message};
use crate::secret::SecretRef;
use serde::de::{self, DeserializeOwned, Visitor};
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// Where a connector table is in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableKey {
    /// `[sources.<name>]`.
    Source(String),
    /// `[[outputs]]` number `i` (0-based).
    Output(usize),
}

/// The table of one source or output, for its connector to read.
pub struct ConnectorTable<'a> {
    pipeline: &'a Pipeline,
    key: TableKey,
    kind: Spanned<String>,
}

impl<'a> ConnectorTable<'a> {
    pub(super) fn new(pipeline: &'a Pipeline, key: TableKey, kind: Spanned<String>) -> Self {
        ConnectorTable {
            pipeline,
            key,
            kind,
        }
    }

    /// The table's `type`.
    pub fn kind(&self) -> &str {
        self.kind.get_ref()
    }

    /// The entry of `types` (a connector registry: `type` name, builder) this table's `type`
    /// names, or an error listing the known ones.
    pub fn choose<'t, B>(&self, types: &'t [(&str, B)]) -> Result<&'t B, ConfigError> {
        match types.iter().find(|(kind, _)| *kind == self.kind()) {
            Some((_, build)) => Ok(build),
            None => {
                let known: Vec<String> =
                    types.iter().map(|(kind, _)| format!("`{kind}`")).collect();
                let what = match self.key {
                    TableKey::Source(_) => "source",
                    TableKey::Output(_) => "output",
                };
                Err(self.error(format!(
                    "unknown {what} type `{}`, expected one of {}",
                    self.kind(),
                    known.join(", ")
                )))
            }
        }
    }

    /// The table's path in error messages (`sources.lines`, `outputs[0]`).
    pub fn path(&self) -> String {
        match &self.key {
            TableKey::Source(name) => format!("sources.{name}"),
            TableKey::Output(i) => format!("outputs[{i}]"),
        }
    }

    /// What the table is, in words (`socket source`, `print output`).
    pub fn what(&self) -> String {
        match self.key {
            TableKey::Source(_) => format!("{} source", self.kind()),
            TableKey::Output(_) => format!("{} output", self.kind()),
        }
    }

    /// The job's name and tenant (the tenant defaults to the job name), for names a connector
    /// derives per job (a Kafka group, a transactional id).
    pub fn job_identity(&self) -> (String, String) {
        let name = self.pipeline.job_name();
        let tenant = self.pipeline.file.job.tenant.clone();
        (name.clone(), tenant.unwrap_or(name))
    }

    /// A name the connector keeps per job on a system jobs share (a Kafka group, a
    /// transactional id): the one field `field` names, or `spate.<tenant>.<job><suffix>`.
    /// Under a policy a named one must start with `spate.<tenant>.`, so that one tenant
    /// cannot commit offsets to another's group or fence another's transactions.
    pub fn per_job_name(
        &self,
        field: &str,
        named: Option<&Spanned<String>>,
        suffix: &str,
    ) -> Result<String, ConfigError> {
        let (job, tenant) = self.job_identity();
        let prefix = format!("spate.{tenant}.");
        let Some(named) = named else {
            return Ok(format!("{prefix}{job}{suffix}"));
        };
        if self.policy().is_some() && !named.get_ref().starts_with(&prefix) {
            return Err(self.error_at(
                named.span(),
                field,
                format!(
                    "'{}' is not this tenant's: under the platform policy it must start with \
                     '{prefix}' (or leave it out for the default)",
                    named.get_ref()
                ),
            ));
        }
        Ok(named.get_ref().clone())
    }

    /// The directory relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.pipeline.base_dir()
    }

    /// Where the path in field `field` is on the host: as written without a policy, inside
    /// the data root with one (or an error at the field).
    pub fn host_path(&self, field: &str, path: &Spanned<String>) -> Result<String, ConfigError> {
        let field = format!("{}.{field}", self.path());
        self.pipeline
            .host_path(path.span(), &field, path.get_ref())
            .map(|p| p.display().to_string())
    }

    /// Whether the table may connect to `host:port`, named in field `field` at `span`.
    pub fn endpoint(
        &self,
        span: Range<usize>,
        field: &str,
        host: &str,
        port: u16,
    ) -> Result<(), ConfigError> {
        let field = format!("{}.{field}", self.path());
        self.pipeline.endpoint(span, &field, host, port)
    }

    /// The secret of field `field` as it may be read (see [`Pipeline::secret`]).
    pub fn secret(
        &self,
        span: Range<usize>,
        field: &str,
        secret: &SecretRef,
    ) -> Result<SecretRef, ConfigError> {
        let field = format!("{}.{field}", self.path());
        self.pipeline.secret(span, &field, secret)
    }

    /// The policy the pipeline is under, if any.
    pub fn policy(&self) -> Option<&Policy> {
        self.pipeline.policy()
    }

    /// An error at `span`, about field `field` of this table.
    pub fn error_at(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let field = format!("{}.{field}", self.path());
        self.pipeline.error_at(span, &field, message)
    }

    /// An error about the table as a whole, pointing at its `type`.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        self.pipeline
            .error_at(self.kind.span(), &self.path(), message)
    }

    /// A field the connector cannot do without.
    pub fn required<'f, T>(
        &self,
        name: &str,
        field: &'f Option<Spanned<T>>,
    ) -> Result<&'f T, ConfigError> {
        field
            .as_ref()
            .map(Spanned::get_ref)
            .ok_or_else(|| self.error(format!("a {} needs `{name}`", self.what())))
    }

    /// The table's fields as `T`, a struct of the fields this `type` takes (kebab-case, spans
    /// kept with [`Spanned`]). A field `T` does not have is refused at its line, naming the
    /// ones it has.
    pub fn fields<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let allowed = struct_fields::<T>();
        let text = &self.pipeline.text;
        let document = DeTable::parse(text).map_err(|e| self.toml_error(&e, None))?;
        let table = match self.locate(document.get_ref()) {
            Some(DeValue::Table(table)) => table,
            _ => return Err(self.error("the table is not where it was read from")),
        };
        let common: &[&str] = match self.key {
            TableKey::Source(_) => &["type"],
            TableKey::Output(_) => &["type", "from"],
        };
        for key in table.keys() {
            let name = key.get_ref().as_ref();
            if !common.contains(&name) && !allowed.contains(&name) {
                return Err(self.error_at(
                    key.span(),
                    name,
                    format!(
                        "a {} does not take `{name}` ({})",
                        self.what(),
                        if allowed.is_empty() {
                            "it takes only type".to_owned()
                        } else {
                            format!("it takes: type, {}", allowed.join(", "))
                        }
                    ),
                ));
            }
        }
        let mut fields = DeTable::new();
        for (key, value) in table.iter() {
            if !common.contains(&key.get_ref().as_ref()) {
                fields.insert(key.clone(), value.clone());
            }
        }
        let span = self.kind.span();
        let value = Spanned::new(span, DeValue::Table(fields));
        serde_path_to_error::deserialize(ValueDeserializer::from(value)).map_err(|e| {
            let path = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let field = (path != ".").then_some(path);
            self.toml_error(&e.into_inner(), field)
        })
    }

    /// The table in the parsed document.
    fn locate<'d>(&self, document: &'d DeTable<'_>) -> Option<&'d DeValue<'d>> {
        let section = |name: &str| {
            document
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == name)
                .map(|(_, v)| v.get_ref())
        };
        match &self.key {
            TableKey::Source(name) => match section("sources")? {
                DeValue::Table(sources) => sources
                    .iter()
                    .find(|(k, _)| k.get_ref().as_ref() == name.as_str())
                    .map(|(_, v)| v.get_ref()),
                _ => None,
            },
            TableKey::Output(i) => match section("outputs")? {
                DeValue::Array(outputs) => outputs.get(*i).map(Spanned::get_ref),
                _ => None,
            },
        }
    }

    fn toml_error(&self, e: &toml::de::Error, field: Option<String>) -> ConfigError {
        let text = &self.pipeline.text;
        ConfigError {
            file: self.pipeline.path.clone(),
            position: e.span().map(|s| line_column(text, s.start)),
            field: field.map(|f| format!("{}.{f}", self.path())),
            message: short_message(e),
            overridden: self.pipeline.overridden,
        }
    }
}

/// The field names of the struct `T` deserializes from, as serde sees them (renamed).
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'f>(&'f mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names read")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    #[allow(dead_code)]
    struct Example {
        host: Option<String>,
        reconnect_max: Option<u32>,
    }

    #[test]
    fn field_names_are_read_from_the_struct() {
        assert_eq!(struct_fields::<Example>(), ["host", "reconnect-max"]);
    }
}
