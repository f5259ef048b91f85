//! Claims on what a writer alone may use in this process: a PostgreSQL output's progress
//! marker, a Kafka output's transactional id. Two outputs of one job that would share one (two
//! outputs into one table, or to one topic) would skip or fence each other's batches; the second
//! is refused when it opens instead.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// What the writers of this process hold.
static CLAIMED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// A claim held by a writer, released when it is dropped.
#[derive(Debug)]
pub struct Claim(String);

impl Claim {
    /// Claims `key`; an error if another writer of the process holds it.
    pub fn take(key: String) -> Result<Claim, String> {
        let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        if !claimed.insert(key.clone()) {
            return Err(key);
        }
        Ok(Claim(key))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        claimed.remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_held_once_and_released_on_drop() {
        let first = Claim::take("test: a".into()).unwrap();
        assert_eq!(Claim::take("test: a".into()).unwrap_err(), "test: a");
        let other = Claim::take("test: b".into());
        assert!(other.is_ok());
        drop(first);
        assert!(Claim::take("test: a".into()).is_ok());
    }
}
