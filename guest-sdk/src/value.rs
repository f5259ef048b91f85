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
    /// The value's 8 bytes, for the fixed-width types a [`Monoid`] combines.
    fn as_fixed8(&self) -> Option<[u8; 8]> {
        None
    }
}

/// A well-known combine function (the WIT `monoid`). A combiner declaring one promises its
/// `combine` computes exactly it, which lets the host have upstream operators pre-combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monoid {
    /// Wrapping sum of i64.
    SumI64,
    /// Minimum of i64.
    MinI64,
    /// Maximum of i64.
    MaxI64,
    /// Sum of f64.
    SumF64,
}

impl Monoid {
    /// The value type it combines.
    pub fn value_type(self) -> ValueType {
        match self {
            Monoid::SumF64 => ValueType::F64,
            _ => ValueType::I64,
        }
    }

    /// Folds `value` into `acc`, both in their 8-byte little-endian encoding.
    #[inline]
    pub fn combine(self, acc: &mut [u8; 8], value: [u8; 8]) {
        let (a, v) = (i64::from_le_bytes(*acc), i64::from_le_bytes(value));
        *acc = match self {
            Monoid::SumI64 => a.wrapping_add(v).to_le_bytes(),
            Monoid::MinI64 => a.min(v).to_le_bytes(),
            Monoid::MaxI64 => a.max(v).to_le_bytes(),
            Monoid::SumF64 => (f64::from_le_bytes(*acc) + f64::from_le_bytes(value)).to_le_bytes(),
        };
    }
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
    fn as_fixed8(&self) -> Option<[u8; 8]> {
        Some(self.to_le_bytes())
    }
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
    fn as_fixed8(&self) -> Option<[u8; 8]> {
        Some(self.to_le_bytes())
    }
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
    fn monoids_combine_encoded_values() {
        let mut acc = 5i64.to_le_bytes();
        Monoid::SumI64.combine(&mut acc, 3i64.to_le_bytes());
        assert_eq!(i64::from_le_bytes(acc), 8);
        Monoid::MinI64.combine(&mut acc, (-2i64).to_le_bytes());
        assert_eq!(i64::from_le_bytes(acc), -2);
        Monoid::MaxI64.combine(&mut acc, 7i64.to_le_bytes());
        assert_eq!(i64::from_le_bytes(acc), 7);
        let mut f = 1.5f64.to_le_bytes();
        Monoid::SumF64.combine(&mut f, 2.0f64.to_le_bytes());
        assert_eq!(f64::from_le_bytes(f), 3.5);
    }

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
