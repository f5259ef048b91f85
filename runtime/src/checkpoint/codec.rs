//! The binary encoding of state in a checkpoint: little-endian integers and length-prefixed
//! byte strings, read back with bounds checks (a short or corrupt input is an error, never a
//! panic).

use anyhow::{Result, bail};

/// Appends values to a byte buffer.
#[derive(Default)]
pub struct Writer {
    /// The bytes written.
    pub bytes: Vec<u8>,
}

impl Writer {
    /// A u64.
    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.bytes.extend_from_slice(v);
    }
}

/// Reads values written by [`Writer`].
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// True when everything was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.rest.len() {
            bail!(
                "state ends early: {n} bytes wanted, {} left",
                self.rest.len()
            );
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    /// A u64.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u64()?;
        self.take(usize::try_from(n)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_short_input_is_an_error() {
        let mut w = Writer::default();
        w.u64(7);
        w.bytes(b"key");
        let mut r = Reader::new(&w.bytes);
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.bytes().unwrap(), b"key");
        assert!(r.is_empty());
        let mut short = Reader::new(&w.bytes[..10]);
        short.u64().unwrap();
        assert!(short.bytes().is_err());
    }
}
