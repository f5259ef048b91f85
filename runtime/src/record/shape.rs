//! What the bytes of a stream's keys and values mean: a scalar of a WIT `value-type`, or a
//! composite built by a host operator (a group, a pair, an optional side of an outer join),
//! encoded as `spate_guest::nested` describes.

use spate_guest::ValueType;
use std::fmt;

/// The meaning of a key or value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One value of a WIT value type.
    Scalar(ValueType),
    /// A list of values (groupByKey's groups), printed `[a, b]`.
    List(Box<Shape>),
    /// Two values (a join's sides), printed `(a,b)`.
    Pair(Box<Shape>, Box<Shape>),
    /// A value that may be absent (an outer join's missing side), printed `Some(a)` or `None`.
    Maybe(Box<Shape>),
}

impl Shape {
    /// UTF-8 text.
    pub const TEXT: Shape = Shape::Scalar(ValueType::Text);
    /// A 64-bit integer.
    pub const I64: Shape = Shape::Scalar(ValueType::I64);
    /// A 64-bit float.
    pub const F64: Shape = Shape::Scalar(ValueType::F64);

    /// A pair of `left` and `right`.
    pub fn pair(left: Shape, right: Shape) -> Shape {
        Shape::Pair(Box::new(left), Box::new(right))
    }

    /// A list of `item`.
    pub fn list(item: Shape) -> Shape {
        Shape::List(Box::new(item))
    }

    /// An optional `item`.
    pub fn maybe(item: Shape) -> Shape {
        Shape::Maybe(Box::new(item))
    }

    /// The scalar type, if it is one.
    pub fn scalar(&self) -> Option<ValueType> {
        match self {
            Shape::Scalar(t) => Some(*t),
            _ => None,
        }
    }
}

impl From<ValueType> for Shape {
    fn from(t: ValueType) -> Self {
        Shape::Scalar(t)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Scalar(t) => f.write_str(type_name(*t)),
            Shape::List(item) => write!(f, "list<{item}>"),
            Shape::Pair(a, b) => write!(f, "({a}, {b})"),
            Shape::Maybe(item) => write!(f, "option<{item}>"),
        }
    }
}

/// The name of a WIT value type as pipeline files and `spate check` write it.
pub fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Bytes => "bytes",
        ValueType::Text => "text",
        ValueType::I64 => "i64",
        ValueType::F64 => "f64",
    }
}

/// The key and value types of a stream, as far as the operators declare them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamType {
    /// Key type; none for unkeyed records.
    pub key: Option<Shape>,
    /// Value type.
    pub value: Shape,
}

impl StreamType {
    /// Unkeyed text lines, what sources emit.
    pub fn lines() -> StreamType {
        StreamType {
            key: None,
            value: Shape::TEXT,
        }
    }

    /// Keyed records.
    pub fn keyed(key: Shape, value: Shape) -> StreamType {
        StreamType {
            key: Some(key),
            value,
        }
    }
}

impl fmt::Display for StreamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "({key}, {})", self.value),
            None => write!(f, "{}", self.value),
        }
    }
}
