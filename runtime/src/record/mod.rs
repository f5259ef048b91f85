//! What a record is beyond its bytes: the shape of its key and value ([`Shape`],
//! [`StreamType`]) and its text, the way Spark prints it (outputs, dead letters).

mod render;
mod shape;

pub use render::{json_value, partition_text, write_part, write_record, write_value};
pub use shape::{Shape, StreamType, type_name};
