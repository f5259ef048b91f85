//! The bundled demo text, released at a fixed number of lines per second.

use super::ReceiverContext;
use super::lines::LineSplitter;
use crate::bundled::DEMO_TEXT;
use crate::config::{BadLinePolicy, Trigger};
use anyhow::Result;
use spate_guest::Column;
use std::time::{Duration, Instant};

/// Releases [`DEMO_TEXT`]; with `available-now` or a rate of 0, all at once.
pub fn run(context: &ReceiverContext, lines_per_second: u32) -> Result<()> {
    let mut splitter =
        LineSplitter::new("bundled text".into(), usize::MAX / 2, BadLinePolicy::Fail);
    let mut all = Column::default();
    splitter.feed(DEMO_TEXT.as_bytes(), &mut all)?;
    splitter.finish(&mut all)?;
    if context.trigger == Trigger::AvailableNow || lines_per_second == 0 {
        context.deliver(&mut all, &mut splitter);
        return Ok(());
    }
    let start = Instant::now();
    let mut released = 0;
    let mut chunk = Column::default();
    while released < all.len() {
        let due = ((start.elapsed().as_secs_f64() * f64::from(lines_per_second)) as usize + 1)
            .min(all.len());
        for i in released..due {
            chunk.push(all.get(i));
        }
        released = due;
        if !context.deliver(&mut chunk, &mut splitter) || !context.sleep(Duration::from_millis(20))
        {
            break;
        }
    }
    Ok(())
}
