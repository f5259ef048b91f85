//! Secrets a pipeline file names without holding them: `{ env = "VAR" }` or
//! `{ file = "/run/secrets/x" }`, so that a password never has to be written in the file.

use serde::Deserialize;

/// Where a secret is read from: an environment variable or a file (exactly one of them).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Environment variable holding the value.
    pub env: Option<String>,
    /// File holding the value (a trailing newline is removed).
    pub file: Option<String>,
}

impl SecretRef {
    /// The secret's value; an error names `what` (`password`, `client setting "x"`) and where
    /// the value was looked for.
    pub fn read(&self, what: &str) -> Result<String, String> {
        match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var)
                .map_err(|_| format!("{what}: environment variable {var} is not set")),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("{what}: cannot read {path}: {e}")),
            _ => Err(format!(
                "{what}: give {{ env = \"VAR\" }} or {{ file = \"path\" }} (one of them)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_comes_from_a_variable_or_a_file_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let file = SecretRef {
            env: None,
            file: Some(path.display().to_string()),
        };
        assert_eq!(file.read("password").unwrap(), "s3cret");

        let unset = SecretRef {
            env: Some("SPATE_TEST_SURELY_UNSET".into()),
            file: None,
        };
        let error = unset.read("password").unwrap_err();
        assert!(error.contains("password") && error.contains("SPATE_TEST_SURELY_UNSET"));

        let both = SecretRef {
            env: Some("X".into()),
            file: Some("y".into()),
        };
        assert!(both.read("password").unwrap_err().contains("one of them"));
    }
}
