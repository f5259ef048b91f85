//! The one thread that drives epoch interruption for every engine of the process: it advances
//! each registered engine's epoch every [`TICK`], so that a call past its deadline traps within
//! a tick. Engines are held weakly; a dropped engine leaves the list on the next tick.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use wasmtime::{Engine, EngineWeak};

/// How often epochs advance: the resolution of `limits.call-time`.
pub const TICK: Duration = Duration::from_millis(10);

fn engines() -> &'static Mutex<Vec<EngineWeak>> {
    static ENGINES: OnceLock<Mutex<Vec<EngineWeak>>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("spate-epoch-ticker".into())
            .spawn(tick_forever);
        if let Err(e) = spawned {
            // Without the ticker no call would ever time out: say so loudly.
            tracing::error!("cannot start the epoch ticker, call-time limits will not fire: {e}");
        }
        Mutex::new(Vec::new())
    })
}

fn tick_forever() {
    loop {
        std::thread::sleep(TICK);
        let mut list = engines().lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|weak| match weak.upgrade() {
            Some(engine) => {
                engine.increment_epoch();
                true
            }
            None => false,
        });
    }
}

/// Starts ticking `engine`'s epoch (and the ticker thread, on first use).
pub fn register(engine: &Engine) {
    engines()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(engine.weak());
}

/// The epoch deadline, in ticks, for a call that may run `limit`: rounded up, at least one.
pub fn ticks_for(limit: Duration) -> u64 {
    (limit.as_nanos().div_ceil(TICK.as_nanos()) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(ticks_for(Duration::from_secs(1)), 100);
        assert_eq!(ticks_for(Duration::from_millis(15)), 2);
        assert_eq!(ticks_for(Duration::from_millis(1)), 1);
    }
}
