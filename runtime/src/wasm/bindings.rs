//! Host bindings generated from `wit/operator.wit`, one module per world, sharing the types.

/// The `transform-operator` world (and the shared `types` interface).
pub mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "spate:operator/transform-operator",
    });
}

/// The `deferring-transform-operator` world: only its `deferred-combine` export is used (the
/// `transform` one through [`transform`]), and only when a component has it.
pub mod deferring {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "spate:operator/deferring-transform-operator",
        with: {
            "spate:operator/types": super::transform::spate::operator::types,
        },
    });
}

/// The optional `deferred-combine` export of a transform.
pub use deferring::exports::spate::operator::deferred_combine::{
    Guest as DeferredCombine, GuestIndices as DeferredCombineIndices,
};

/// The `combiner-operator` world, reusing the types generated for `transform`.
pub mod combiner {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "spate:operator/combiner-operator",
        with: {
            "spate:operator/types": super::transform::spate::operator::types,
        },
    });
}

/// The `state-operator` world, reusing the types generated for `transform`.
pub mod state {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "spate:operator/state-operator",
        with: {
            "spate:operator/types": super::transform::spate::operator::types,
        },
    });
}

pub use state::exports::spate::operator::state::{StateInfo, StateInput, StateOutput};
pub use transform::spate::operator::types::{
    Batch, Column, Monoid, OperatorError, OperatorInfo, ValueType,
};

impl From<Monoid> for spate_guest::Monoid {
    fn from(m: Monoid) -> Self {
        match m {
            Monoid::SumI64 => spate_guest::Monoid::SumI64,
            Monoid::MinI64 => spate_guest::Monoid::MinI64,
            Monoid::MaxI64 => spate_guest::Monoid::MaxI64,
            Monoid::SumF64 => spate_guest::Monoid::SumF64,
        }
    }
}

impl From<spate_guest::Monoid> for Monoid {
    fn from(m: spate_guest::Monoid) -> Self {
        match m {
            spate_guest::Monoid::SumI64 => Monoid::SumI64,
            spate_guest::Monoid::MinI64 => Monoid::MinI64,
            spate_guest::Monoid::MaxI64 => Monoid::MaxI64,
            spate_guest::Monoid::SumF64 => Monoid::SumF64,
        }
    }
}

/// The WIT package version every export name carries.
pub const PACKAGE: &str = "spate:operator@0.1.0";

impl From<ValueType> for spate_guest::ValueType {
    fn from(t: ValueType) -> Self {
        match t {
            ValueType::Bytes => spate_guest::ValueType::Bytes,
            ValueType::Text => spate_guest::ValueType::Text,
            ValueType::I64 => spate_guest::ValueType::I64,
            ValueType::F64 => spate_guest::ValueType::F64,
        }
    }
}

/// Moves an SDK column into the bindings' type (no copy).
pub fn column_to_wit(c: spate_guest::Column) -> Column {
    Column {
        data: c.data,
        offsets: c.offsets,
    }
}

/// Moves a bindings column into the SDK's type (no copy).
pub fn column_from_wit(c: Column) -> spate_guest::Column {
    spate_guest::Column {
        data: c.data,
        offsets: c.offsets,
    }
}

/// Moves an SDK partition into the bindings' type (the WIT record `batch`; no copy).
pub fn batch_to_wit(b: spate_guest::Partition) -> Batch {
    Batch {
        keys: b.keys.map(column_to_wit),
        values: column_to_wit(b.values),
        timestamps: b.timestamps,
    }
}

/// Moves the bindings' WIT `batch` into the SDK's partition (no copy).
pub fn batch_from_wit(b: Batch) -> spate_guest::Partition {
    spate_guest::Partition {
        keys: b.keys.map(column_from_wit),
        values: column_from_wit(b.values),
        timestamps: b.timestamps,
    }
}
