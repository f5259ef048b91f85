//! Operator parameters from the pipeline file, with typed accessors and clear errors.

use crate::Error;

/// The `params = { ... }` table of an operator in the pipeline file, as name/text pairs.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parameters from name/text pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Params { pairs }
    }

    /// Parameters from string slices (handy in tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Params::new(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The raw text of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (`true`/`false`), or `default` when absent.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, Error> {
        self.parse(name, default, "true or false")
    }

    /// An integer parameter, or `default` when absent.
    pub fn i64(&self, name: &str, default: i64) -> Result<i64, Error> {
        self.parse(name, default, "an integer")
    }

    /// A text parameter, or none when absent.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, default: T, what: &str) -> Result<T, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text.trim().parse().map_err(|_| {
                Error::new(format!("parameter '{name}' must be {what}, got '{text}'"))
            }),
        }
    }

    /// Fails on a parameter name not in `known`, so that a typo is an error and not a default.
    pub fn check_known(&self, known: &[(&str, &str)]) -> Result<(), Error> {
        for (name, _) in &self.pairs {
            if !known.iter().any(|(k, _)| k == name) {
                let names: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
                let hint = if names.is_empty() {
                    "this operator takes no parameters".to_owned()
                } else {
                    format!("known: {}", names.join(", "))
                };
                return Err(Error::new(format!("unknown parameter '{name}' ({hint})")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_accessors_and_errors() {
        let p = Params::from_pairs([("lowercase", "true"), ("min", "x")]);
        assert!(p.bool("lowercase", false).unwrap());
        assert!(!p.bool("absent", false).unwrap());
        let err = p.i64("min", 0).unwrap_err();
        assert_eq!(err.message, "parameter 'min' must be an integer, got 'x'");
        let err = p.check_known(&[("lowercase", "")]).unwrap_err();
        assert_eq!(err.message, "unknown parameter 'min' (known: lowercase)");
    }
}
