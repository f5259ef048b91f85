//! Durations and byte sizes as pipeline files write them: `"1s"`, `"200ms"`, `"4 MiB"`.

use serde::{Deserialize, Deserializer, de};
use std::fmt;
use std::time::Duration;

/// A duration written as text with a unit (`"1s"`, `"200ms"`, `"1m 30s"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval(pub Duration);

impl Interval {
    /// The duration in whole milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0.as_millis() as u64
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let duration = humantime::parse_duration(&text).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration '{text}' ({e}); write it with a unit, like \"1s\" or \"200ms\""
            ))
        })?;
        if duration.as_millis() == 0 || duration.subsec_nanos() % 1_000_000 != 0 {
            return Err(de::Error::custom(format!(
                "invalid duration '{text}': must be a positive whole number of milliseconds"
            )));
        }
        Ok(Interval(duration))
    }
}

/// A size in bytes: an integer, or text with a unit (`"64 KiB"`, `"4MB"`, `"1 GiB"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size as a `usize`.
    pub fn get(self) -> usize {
        self.0 as usize
    }

    /// Parses `"4 MiB"`-style text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid size '{text}': expected a number, like \"4 MiB\""))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "invalid size '{text}': unknown unit '{other}' (use B, KB, KiB, MB, MiB, GB, GiB)"
                ));
            }
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("size '{text}' is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{} {unit}", self.0 / size);
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes, like 65536 or \"4 MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("4 MiB").unwrap().0, 4 << 20);
        assert_eq!(ByteSize::parse("10KB").unwrap().0, 10_000);
        assert_eq!(ByteSize::parse("17").unwrap().0, 17);
        assert!(
            ByteSize::parse("4 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert_eq!(ByteSize(1 << 20).to_string(), "1 MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000 B");
    }

    #[test]
    fn intervals_need_units_and_whole_millis() {
        let parse =
            |s: &str| Interval::deserialize(de::value::StrDeserializer::<de::value::Error>::new(s));
        assert_eq!(parse("1s").unwrap().as_millis(), 1000);
        assert_eq!(parse("200ms").unwrap().as_millis(), 200);
        assert!(parse("5").is_err());
        assert!(parse("0s").is_err());
        assert!(parse("10us").is_err());
    }
}
