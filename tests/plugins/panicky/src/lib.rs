//! A test operator that misbehaves on demand: it passes lines through unchanged and panics (a
//! Wasm trap) when a line equals its `trigger` parameter (default `boom`).

use spate_guest::{Error, Info, Params, PartitionBuilder, Record, Transform};

/// The operator.
pub struct Panicky {
    trigger: String,
}

impl Transform for Panicky {
    fn info() -> Info {
        Info {
            name: "panicky",
            description: "passes records through; panics on the trigger line",
            params: &[("trigger", "the line that makes it panic (default boom)")],
            key_type: None,
            value_type: None,
            monoid: None,
        }
    }

    fn configure(params: &Params) -> Result<Self, Error> {
        Ok(Panicky {
            trigger: params.string("trigger").unwrap_or_else(|| "boom".into()),
        })
    }

    fn record(&mut self, record: Record<'_>, out: &mut PartitionBuilder) -> Result<(), Error> {
        if record.value == self.trigger.as_bytes() {
            panic!("panicky operator hit its trigger line '{}'", self.trigger);
        }
        out.push_record(&record);
        Ok(())
    }
}

spate_guest::export_transform!(Panicky);
