//! The bundled demo text, released at a fixed number of lines per second.

use super::lines::LineSplitter;
use super::{ReceiverContext, Source};
use crate::bundled::DEMO_TEXT;
use crate::config::{BadLinePolicy, ConfigError, ConnectorTable, Trigger};
use crate::position::Progress;
use anyhow::Result;
use serde::Deserialize;
use spate_guest::Column;
use std::time::{Duration, Instant};

/// `type = "bundled"`: the fields of the table.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Fields {
    /// Lines released per second (default 20; 0: all at once).
    lines_per_second: Option<u32>,
}

/// The demo text bundled in the binary, replayed at a fixed rate.
#[derive(Debug)]
pub struct Bundled {
    /// Lines released per second (0: all at once).
    lines_per_second: u32,
}

/// Reads a bundled source's table.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Source>, ConfigError> {
    let fields: Fields = table.fields()?;
    Ok(Box::new(Bundled {
        lines_per_second: fields.lines_per_second.unwrap_or(20),
    }))
}

impl Source for Bundled {
    fn describe(&self) -> String {
        format!(
            "the bundled demo text at {} lines per second",
            self.lines_per_second
        )
    }

    fn receive(&self, context: &ReceiverContext) -> Result<()> {
        run(context, self.lines_per_second)
    }
}

/// Releases [`DEMO_TEXT`] (from the line a recovered job had reached); with `available-now`
/// or a rate of 0, all at once. Its position is the count of lines released.
fn run(context: &ReceiverContext, lines_per_second: u32) -> Result<()> {
    let mut splitter =
        LineSplitter::new("bundled text".into(), usize::MAX / 2, BadLinePolicy::Fail);
    let mut all = Column::default();
    splitter.feed(DEMO_TEXT.as_bytes(), &mut all)?;
    splitter.finish(&mut all)?;
    let first = (context.resume.stream as usize).min(all.len());
    let mut chunk = Column::default();
    if context.trigger == Trigger::AvailableNow || lines_per_second == 0 {
        (first..all.len()).for_each(|i| chunk.push(all.get(i)));
        let progress = Progress::Stream(all.len() as u64);
        context.deliver(&mut chunk, &mut splitter, Some(progress));
        return Ok(());
    }
    let start = Instant::now();
    let mut released = first;
    while released < all.len() {
        let due =
            (first + (start.elapsed().as_secs_f64() * f64::from(lines_per_second)) as usize + 1)
                .min(all.len());
        for i in released..due {
            chunk.push(all.get(i));
        }
        released = due;
        let progress = Progress::Stream(released as u64);
        if !context.deliver(&mut chunk, &mut splitter, Some(progress))
            || !context.sleep(Duration::from_millis(20))
        {
            break;
        }
    }
    Ok(())
}
