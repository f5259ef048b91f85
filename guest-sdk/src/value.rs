//! How typed values are encoded in a column's bytes (the conventions of the WIT `value-type`).

use crate::Error;

/// How a key or value column's bytes are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// Raw bytes.
    Bytes,
    /// UTF-8 text.
    Text,
    /// 64-bit signed integer, 8 bytes little-endian.
    I64,
    /// 64-bit float, 8 bytes little-endian.
    F64,
}

/// A Rust type with a fixed encoding in a column.
pub trait Value: Sized {
    /// The WIT value type this encodes as.
    const TYPE: ValueType;
    /// Reads a value from its bytes.
    fn decode(bytes: &[u8]) -> Result<Self, Error>;
    /// Appends the value's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

fn fixed8(bytes: &[u8], what: &str) -> Result<[u8; 8], Error> {
    bytes.try_into().map_err(|_| {
        Error::new(format!(
            "expected an {what} value of 8 bytes, got {} bytes",
            bytes.len()
        ))
    })
}

impl Value for i64 {
    const TYPE: ValueType = ValueType::I64;
    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        fixed8(bytes, "i64").map(i64::from_le_bytes)
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Value for f64 {
    const TYPE: ValueType = ValueType::F64;
    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        fixed8(bytes, "f64").map(f64::from_le_bytes)
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Value for String {
    const TYPE: ValueType = ValueType::Text;
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::new(format!("value is not UTF-8: {e}")))
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl Value for Vec<u8> {
    const TYPE: ValueType = ValueType::Bytes;
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        Ok(bytes.to_vec())
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        let mut buf = Vec::new();
        (-5i64).encode(&mut buf);
        assert_eq!(i64::decode(&buf).unwrap(), -5);
        buf.clear();
        2.5f64.encode(&mut buf);
        assert_eq!(f64::decode(&buf).unwrap(), 2.5);
        assert!(i64::decode(b"abc").unwrap_err().message.contains("3 bytes"));
    }
}
