//! The encoding of composite values: the groups of groupByKey, the pairs of joins, the
//! (left, right) groups of cogroup.
//!
//! A composite value is a sequence of items, each a 4-byte little-endian length followed by
//! that many bytes, or the length `0xFFFF_FFFF` alone for an absent item (an outer join's
//! missing side). A list of n values has n items; a pair has two. Items nest: cogroup's value
//! is a pair whose items are lists. Any language reads it with a loop of four lines.

/// The length that marks an absent item.
const ABSENT: u32 = u32::MAX;

/// Appends one item to a composite value being built in `out`.
pub fn push_item(out: &mut Vec<u8>, item: Option<&[u8]>) {
    match item {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Reserves room for an item whose bytes the caller appends next; returns the position to hand
/// to [`end_item`].
pub fn begin_item(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; 4]);
    out.len()
}

/// Writes the length of the item begun at `start` (all bytes appended since).
pub fn end_item(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u32;
    out[start - 4..start].copy_from_slice(&len.to_le_bytes());
}

/// The items of a composite value, in order; `None` for an absent item. Stops with an error
/// item at the first malformed length.
pub fn items(value: &[u8]) -> Items<'_> {
    Items { rest: value }
}

/// Iterator returned by [`items`].
pub struct Items<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<Option<&'a [u8]>, crate::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err(crate::Error::new(
                "composite value: truncated item length",
            )));
        };
        let len = u32::from_le_bytes(*len);
        if len == ABSENT {
            self.rest = rest;
            return Some(Ok(None));
        }
        let len = len as usize;
        if len > rest.len() {
            self.rest = &[];
            return Some(Err(crate::Error::new(format!(
                "composite value: an item of {len} bytes, but only {} remain",
                rest.len()
            ))));
        }
        let (item, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Ok(Some(item)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_with_absent_and_nested_ones() {
        let mut inner = Vec::new();
        push_item(&mut inner, Some(b"a"));
        push_item(&mut inner, Some(b""));
        let mut value = Vec::new();
        let start = begin_item(&mut value);
        value.extend_from_slice(&inner);
        end_item(&mut value, start);
        push_item(&mut value, None);
        let got: Vec<_> = items(&value).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![Some(&inner[..]), None]);
        let nested: Vec<_> = items(got[0].unwrap()).collect::<Result<_, _>>().unwrap();
        assert_eq!(nested, vec![Some(&b"a"[..]), Some(&b""[..])]);
    }

    #[test]
    fn a_truncated_value_is_an_error() {
        let mut value = Vec::new();
        push_item(&mut value, Some(b"abc"));
        value.pop();
        assert!(items(&value).next().unwrap().is_err());
        assert!(items(&[1, 0]).next().unwrap().is_err());
    }
}
