//! The columnar layout of variable-size values (Arrow's binary layout).

/// A column of variable-size binary values: value `i` is `data[offsets[i]..offsets[i + 1]]`.
///
/// `offsets` has n + 1 entries starting at 0, or none at all when the column is empty. Pushing
/// appends to `data` and `offsets`, so building a column costs no allocation per value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Column {
    /// All values, concatenated.
    pub data: Vec<u8>,
    /// Start offsets of the values in `data`, followed by the end of the last one.
    pub offsets: Vec<u32>,
}

impl Column {
    /// An empty column with room for `values` values of `bytes` bytes in total.
    pub fn with_capacity(values: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(values + 1);
        offsets.push(0);
        Column {
            data: Vec::with_capacity(bytes),
            offsets,
        }
    }

    /// Builds a column from byte slices.
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut column = Column::default();
        for value in values {
            column.push(value);
        }
        column
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when the column holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i`. Panics when `i` is out of range or the column is malformed (see [`validate`]).
    ///
    /// [`validate`]: Column::validate
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The values in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.offsets
            .windows(2)
            .map(|w| &self.data[w[0] as usize..w[1] as usize])
    }

    /// Appends a value.
    #[inline]
    pub fn push(&mut self, value: &[u8]) {
        append_bytes(self.begin_value(), value);
        self.end_value();
    }

    /// Starts a value written directly into the returned buffer; finish it with [`end_value`].
    ///
    /// [`end_value`]: Column::end_value
    #[inline]
    pub fn begin_value(&mut self) -> &mut Vec<u8> {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        &mut self.data
    }

    /// Ends the value started by [`begin_value`]: everything written since is one value.
    ///
    /// [`begin_value`]: Column::begin_value
    #[inline]
    pub fn end_value(&mut self) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.offsets.push(self.data.len() as u32);
    }

    /// Appends every value of `other`.
    pub fn extend_from(&mut self, other: &Column) {
        if other.is_empty() {
            return;
        }
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let base = self.data.len() as u32;
        self.data.extend_from_slice(&other.data);
        self.offsets
            .extend(other.offsets[1..].iter().map(|&end| base + end));
    }

    /// Checks the layout: offsets start at 0, never decrease and stay within `data`.
    ///
    /// The host runs this on everything an operator returns, so a guest bug becomes a clear
    /// error instead of an out-of-range read.
    pub fn validate(&self) -> Result<(), String> {
        let Some(&first) = self.offsets.first() else {
            return if self.data.is_empty() {
                Ok(())
            } else {
                Err(format!("{} data bytes but no offsets", self.data.len()))
            };
        };
        if first != 0 {
            return Err(format!("first offset is {first}, expected 0"));
        }
        if let Some(i) = self.offsets.windows(2).position(|w| w[1] < w[0]) {
            return Err(format!(
                "offset {} ({}) is below offset {} ({})",
                i + 1,
                self.offsets[i + 1],
                i,
                self.offsets[i]
            ));
        }
        let last = *self.offsets.last().unwrap_or(&0) as usize;
        if last != self.data.len() {
            return Err(format!(
                "last offset is {last} but the data holds {} bytes",
                self.data.len()
            ));
        }
        Ok(())
    }
}

/// Appends `bytes` to `out`. Short values (most keys and words) are copied with fixed-size
/// loads and stores instead of a `memcpy` call: on wasm32 a `memcpy` of unknown length becomes
/// `memory.copy`, which wasmtime runs as a call out of the guest, dearer than the copy itself.
#[inline(always)]
pub fn append_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    if len > 16 {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(16);
    let start = out.len();
    let spare = out.spare_capacity_mut();
    // Two possibly overlapping fixed-size copies cover every length up to twice their size.
    if len >= 8 {
        copy_fixed::<8>(spare, 0, bytes, 0);
        copy_fixed::<8>(spare, len - 8, bytes, len - 8);
    } else if len >= 4 {
        copy_fixed::<4>(spare, 0, bytes, 0);
        copy_fixed::<4>(spare, len - 4, bytes, len - 4);
    } else {
        for (i, &b) in bytes.iter().enumerate() {
            spare[i].write(b);
        }
    }
    // SAFETY: the `len` bytes after `start` were initialised just above, within the reserved
    // spare capacity (len <= 16 <= reserved).
    unsafe { out.set_len(start + len) };
}

/// Byte-slice equality for short keys with fixed-size loads: a slice `==` calls `memcmp`, a
/// function call (and on wasm32 a byte loop) that costs more than the compare of a short word.
#[inline(always)]
pub fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if len > 16 {
        return a == b;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    if len >= 8 {
        word(a, 0) == word(b, 0) && word(a, len - 8) == word(b, len - 8)
    } else if len >= 4 {
        half(a, 0) == half(b, 0) && half(a, len - 4) == half(b, len - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

#[inline(always)]
fn copy_fixed<const N: usize>(
    dst: &mut [std::mem::MaybeUninit<u8>],
    at: usize,
    src: &[u8],
    from: usize,
) {
    let chunk: [u8; N] = src[from..from + N].try_into().expect("N bytes");
    for (slot, byte) in dst[at..at + N].iter_mut().zip(chunk) {
        slot.write(byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_and_iterate() {
        let mut c = Column::default();
        assert!(c.is_empty());
        c.push(b"ab");
        c.push(b"");
        c.push(b"cde");
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(0), b"ab");
        assert_eq!(c.get(1), b"");
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![&b"ab"[..], b"", b"cde"]);
        assert_eq!(c.offsets, vec![0, 2, 2, 5]);
        c.validate().unwrap();
    }

    #[test]
    fn short_and_long_values_append_exactly() {
        for len in 0..40 {
            let value: Vec<u8> = (0..len as u8).collect();
            let mut out = b"pre".to_vec();
            append_bytes(&mut out, &value);
            assert_eq!(&out[3..], &value[..], "length {len}");
            assert_eq!(out.len(), 3 + len);
        }
    }

    #[test]
    fn bytes_eq_agrees_with_slice_equality() {
        let values: Vec<Vec<u8>> = (0..24).map(|n| (0..n as u8).collect()).collect();
        for a in &values {
            for b in &values {
                assert_eq!(bytes_eq(a, b), a == b);
                let mut c = b.clone();
                if let Some(last) = c.last_mut() {
                    *last ^= 1;
                    assert_eq!(bytes_eq(a, &c), *a == c);
                }
            }
        }
    }

    #[test]
    fn extend_rebases_offsets() {
        let mut a = Column::from_values([&b"x"[..]]);
        let b = Column::from_values([&b"yy"[..], b"z"]);
        a.extend_from(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![&b"x"[..], b"yy", b"z"]);
        a.extend_from(&Column::default());
        assert_eq!(a.len(), 3);
        let mut empty = Column::default();
        empty.extend_from(&b);
        assert_eq!(empty, b);
    }

    #[test]
    fn validate_rejects_malformed_layouts() {
        let bad_start = Column {
            data: b"ab".to_vec(),
            offsets: vec![1, 2],
        };
        assert!(bad_start.validate().unwrap_err().contains("first offset"));
        let decreasing = Column {
            data: b"ab".to_vec(),
            offsets: vec![0, 2, 1],
        };
        assert!(decreasing.validate().unwrap_err().contains("below"));
        let past_end = Column {
            data: b"ab".to_vec(),
            offsets: vec![0, 9],
        };
        assert!(past_end.validate().unwrap_err().contains("last offset"));
        let no_offsets = Column {
            data: b"ab".to_vec(),
            offsets: vec![],
        };
        assert!(no_offsets.validate().is_err());
        Column::default().validate().unwrap();
    }
}
