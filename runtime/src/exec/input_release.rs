//! Handing a batch's input bytes back to the source buffer as soon as the tasks reading them
//! are done, instead of when the whole batch is: the receivers' read-ahead is bounded by the
//! bytes not yet handed back, so they read on while the batch's last tasks, its shuffle and
//! its outputs run (otherwise the time they wait at the end of each stage).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a batch's tasks report input bytes they dropped.
#[derive(Clone)]
pub struct InputRelease {
    hand_back: Arc<dyn Fn(usize) + Send + Sync>,
    released: Arc<AtomicUsize>,
}

impl InputRelease {
    /// Reports released bytes to `hand_back`.
    pub fn new(hand_back: impl Fn(usize) + Send + Sync + 'static) -> Self {
        InputRelease {
            hand_back: Arc::new(hand_back),
            released: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// `bytes` of the batch's input are no longer held.
    pub fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.released.fetch_add(bytes, Ordering::SeqCst);
            (self.hand_back)(bytes);
        }
    }

    /// Bytes released so far.
    pub fn released(&self) -> usize {
        self.released.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_counted_and_handed_back() {
        let handed = Arc::new(AtomicUsize::new(0));
        let to = handed.clone();
        let release = InputRelease::new(move |bytes| {
            to.fetch_add(bytes, Ordering::SeqCst);
        });
        release.clone().release(5);
        release.release(0);
        release.release(7);
        assert_eq!(release.released(), 12);
        assert_eq!(handed.load(Ordering::SeqCst), 12);
    }
}
