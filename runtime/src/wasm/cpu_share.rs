//! Fair CPU between tenants, by Spate's own scheduling of Wasm calls: at most one running call
//! per core in the whole process holds a *permit*, and permits go to the tenant that has used
//! the least CPU for its weight (weighted fair queueing on a virtual clock per tenant).
//!
//! While several tenants are active (they ran a call within the last [`ACTIVE_WINDOW`]), each
//! may hold at most its weighted part of the permits (at least one), so a tenant that burns CPU
//! in every call leaves the other cores to the others' calls and to the host's work for them.
//!
//! A long call does not keep its permit: every epoch tick (and at once when a tenant with less
//! use is waiting, by advancing the holder's engine epoch) the call's epoch callback checks
//! whether someone with a lower virtual clock waits, and if so hands its permit over and waits
//! for the next one. A tenant burning CPU in every call therefore cannot delay a light tenant's
//! calls by more than the time to reach its next epoch check; the kernel then only shares the
//! cores between the permit holders and the host's own threads. A call waiting for host I/O
//! (a bounded WASI wait) gives its permit back while it waits.
//!
//! Time spent waiting for a permit does not count against a call's `call-time`.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// A tenant counts as active this long after it last held a permit.
const ACTIVE_WINDOW: Duration = Duration::from_secs(2);

/// How often a waiting call looks again (a tenant's activity ends without a release).
const RECHECK: Duration = Duration::from_millis(20);

/// A tenant returning from idle starts at most this much CPU time (per unit of weight) behind
/// the busiest-least tenant: short absences earn no unbounded credit.
const IDLE_CREDIT_NS: f64 = 500e6;

/// The process's permits and tenants.
pub struct CpuShares {
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    permits: usize,
    free: usize,
    tenants: Vec<TenantClock>,
    waiting: Vec<(u64, usize)>,
    holders: Vec<(u64, usize, Engine)>,
    next_ticket: u64,
}

struct TenantClock {
    name: String,
    weight: f64,
    /// CPU nanoseconds used, divided by the weight.
    vtime: f64,
    /// When it last held a permit.
    last_active: Option<Instant>,
}

/// A tenant's place in the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantShare(usize);

/// The permits of the process: one per core, or `SPATE_CPU_PERMITS` (a large number leaves
/// the sharing of cores to the kernel alone: the benchmark's baseline).
pub fn shares() -> &'static CpuShares {
    static SHARES: OnceLock<CpuShares> = OnceLock::new();
    SHARES.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let permits = std::env::var("SPATE_CPU_PERMITS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n: &usize| *n > 0)
            .unwrap_or(cores);
        CpuShares::new(permits)
    })
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn vtime(&self, tenant: usize) -> f64 {
        self.tenants[tenant].vtime
    }

    /// Permits `tenant` holds.
    fn held(&self, tenant: usize) -> usize {
        self.holders.iter().filter(|h| h.1 == tenant).count()
    }

    /// Whether `tenant` ran a call lately (or waits for one now).
    fn recently_active(&self, tenant: usize, now: Instant) -> bool {
        self.waiting.iter().any(|w| w.1 == tenant)
            || self.held(tenant) > 0
            || self.tenants[tenant]
                .last_active
                .is_some_and(|at| now.duration_since(at) < ACTIVE_WINDOW)
    }

    /// The most permits `tenant` may hold now: all of them alone, or while it has used the
    /// least for its weight of the active tenants; else its weighted part (at least one), so
    /// that the lighter tenants find a core free.
    fn cap(&self, tenant: usize, now: Instant) -> usize {
        let active: Vec<usize> = (0..self.tenants.len())
            .filter(|t| *t == tenant || self.recently_active(*t, now))
            .collect();
        let lightest = active.iter().all(|t| self.vtime(*t) >= self.vtime(tenant));
        if lightest {
            return self.permits;
        }
        let weights: f64 = active.iter().map(|t| self.tenants[*t].weight).sum();
        let part = self.permits as f64 * self.tenants[tenant].weight / weights;
        (part.floor() as usize).clamp(1, self.permits)
    }

    /// The waiter to serve next among those under their tenant's cap: the lowest virtual
    /// clock, then the first to come.
    fn first_waiter(&self, now: Instant) -> Option<u64> {
        self.waiting
            .iter()
            .filter(|w| self.held(w.1) < self.cap(w.1, now))
            .min_by(|a, b| {
                self.vtime(a.1)
                    .total_cmp(&self.vtime(b.1))
                    .then(a.0.cmp(&b.0))
            })
            .map(|w| w.0)
    }

    fn charge(&mut self, tenant: usize, used: Duration) {
        let clock = &mut self.tenants[tenant];
        clock.vtime += used.as_nanos() as f64 / clock.weight;
    }

    fn active(&self, tenant: usize) -> bool {
        self.waiting.iter().any(|w| w.1 == tenant) || self.holders.iter().any(|h| h.1 == tenant)
    }
}

impl CpuShares {
    /// `permits` calls may run at once.
    pub fn new(permits: usize) -> CpuShares {
        CpuShares {
            state: Mutex::new(State {
                permits: permits.max(1),
                free: permits.max(1),
                tenants: Vec::new(),
                waiting: Vec::new(),
                holders: Vec::new(),
                next_ticket: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// The share of tenant `name`; `weight` (> 0) is its share relative to others' (the
    /// latest job of the tenant to start sets it).
    pub fn tenant(&self, name: &str, weight: f64) -> TenantShare {
        let mut state = lock(&self.state);
        let weight = if weight > 0.0 { weight } else { 1.0 };
        if let Some(i) = state.tenants.iter().position(|t| t.name == name) {
            state.tenants[i].weight = weight;
            return TenantShare(i);
        }
        let start = state
            .tenants
            .iter()
            .map(|t| t.vtime)
            .fold(f64::INFINITY, f64::min);
        state.tenants.push(TenantClock {
            name: name.to_owned(),
            weight,
            vtime: if start.is_finite() { start } else { 0.0 },
            last_active: None,
        });
        TenantShare(state.tenants.len() - 1)
    }

    /// Waits for a permit for a call of `tenant` running on `engine`; returns its ticket and
    /// how long it waited.
    pub fn acquire(&self, tenant: TenantShare, engine: &Engine) -> (u64, Duration) {
        let began = Instant::now();
        let mut state = lock(&self.state);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        if !state.active(tenant.0) {
            // Back from idle: no more than a bounded credit over the tenants still busy.
            let busy = (0..state.tenants.len())
                .filter(|t| state.active(*t))
                .map(|t| state.vtime(t))
                .fold(f64::INFINITY, f64::min);
            if busy.is_finite() {
                let clock = &mut state.tenants[tenant.0];
                clock.vtime = clock.vtime.max(busy - IDLE_CREDIT_NS);
            }
        }
        state.waiting.push((ticket, tenant.0));
        if state.free == 0 {
            // Ask a holder over its tenant's cap, else the one furthest ahead of this tenant,
            // to hand its permit over now.
            let now = Instant::now();
            let mine = state.vtime(tenant.0);
            let over = state
                .holders
                .iter()
                .find(|h| h.1 != tenant.0 && state.held(h.1) > state.cap(h.1, now));
            let ahead = state
                .holders
                .iter()
                .filter(|h| state.vtime(h.1) > mine)
                .max_by(|a, b| state.vtime(a.1).total_cmp(&state.vtime(b.1)));
            if let Some((_, _, engine)) = over.or(ahead) {
                engine.increment_epoch();
            }
        }
        loop {
            let now = Instant::now();
            if state.free > 0 && state.first_waiter(now) == Some(ticket) {
                state.waiting.retain(|w| w.0 != ticket);
                state.free -= 1;
                state.holders.push((ticket, tenant.0, engine.clone()));
                state.tenants[tenant.0].last_active = Some(now);
                // Another permit may be free for the next waiter.
                self.freed.notify_all();
                return (ticket, began.elapsed());
            }
            state = self
                .freed
                .wait_timeout(state, RECHECK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Gives permit `ticket` of `tenant` back, charging `used` CPU time.
    pub fn release(&self, tenant: TenantShare, ticket: u64, used: Duration) {
        let mut state = lock(&self.state);
        state.charge(tenant.0, used);
        state.tenants[tenant.0].last_active = Some(Instant::now());
        let before = state.holders.len();
        state.holders.retain(|h| h.0 != ticket);
        if state.holders.len() < before {
            state.free += 1;
        }
        self.freed.notify_all();
    }

    /// Charges `used` CPU time to `tenant`; true when the caller should hand its permit over:
    /// its tenant holds more than its cap, or a tenant with a lower virtual clock waits.
    pub fn charge_and_check(&self, tenant: TenantShare, used: Duration) -> bool {
        let mut state = lock(&self.state);
        let now = Instant::now();
        state.charge(tenant.0, used);
        state.tenants[tenant.0].last_active = Some(now);
        if state.held(tenant.0) > state.cap(tenant.0, now) {
            return true;
        }
        let mine = state.vtime(tenant.0);
        state
            .waiting
            .iter()
            .any(|w| w.1 != tenant.0 && state.vtime(w.1) < mine)
    }
}

/// A store's place in the schedule: its tenant and engine, and the permit it holds while a
/// call runs.
pub struct CallShare {
    tenant: TenantShare,
    engine: Engine,
    shares: &'static CpuShares,
    held: Option<(u64, Instant)>,
}

impl CallShare {
    /// The share of a store of `tenant` on `engine`, scheduled by `shares`.
    pub fn new(shares: &'static CpuShares, tenant: TenantShare, engine: Engine) -> CallShare {
        CallShare {
            tenant,
            engine,
            shares,
            held: None,
        }
    }

    /// Takes a permit for a call (waiting for one); returns how long it waited.
    pub fn begin(&mut self) -> Duration {
        if self.held.is_some() {
            return Duration::ZERO;
        }
        let (ticket, waited) = self.shares.acquire(self.tenant, &self.engine);
        self.held = Some((ticket, Instant::now()));
        waited
    }

    /// Gives the permit back (the call ended, or waits on the host).
    pub fn end(&mut self) {
        if let Some((ticket, since)) = self.held.take() {
            self.shares.release(self.tenant, ticket, since.elapsed());
        }
    }

    /// At an epoch check: charges the time since the last one, and when a tenant with less
    /// use waits, hands the permit over and waits for the next; returns how long it waited.
    pub fn checkpoint(&mut self) -> Duration {
        let Some((ticket, since)) = self.held else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        if self.shares.charge_and_check(self.tenant, now - since) {
            self.held = Some((ticket, now));
            self.end();
            return self.begin();
        }
        self.held = Some((ticket, now));
        Duration::ZERO
    }

    /// Whether a permit is held.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }
}

impl Drop for CallShare {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_light_tenant_gets_the_permit_before_a_busy_one() {
        let shares: &'static CpuShares = Box::leak(Box::new(CpuShares::new(1)));
        let engine = Engine::default();
        let busy = shares.tenant("busy", 1.0);
        let light = shares.tenant("light", 1.0);
        // The busy tenant has used a second; it holds the one permit.
        let mut holder = CallShare::new(shares, busy, engine.clone());
        holder.begin();
        std::thread::sleep(Duration::from_millis(20));
        // Another busy call and a light call wait; when the holder hands over, light goes first.
        let order = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (name, tenant) in [("busy", busy), ("light", light)] {
            let (order, engine, started) = (order.clone(), engine.clone(), started.clone());
            threads.push(std::thread::spawn(move || {
                let mut call = CallShare::new(shares, tenant, engine);
                started.store(true, Ordering::SeqCst);
                call.begin();
                order.lock().unwrap().push(name);
                call.end();
            }));
            std::thread::sleep(Duration::from_millis(30));
        }
        assert!(started.load(Ordering::SeqCst));
        // The holder's epoch check sees the light tenant waiting with less use.
        assert!(holder.checkpoint() > Duration::ZERO || !holder.holding());
        holder.end();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(order.lock().unwrap()[0], "light");
    }

    #[test]
    fn beside_an_active_tenant_a_tenant_holds_its_part_of_the_permits() {
        let shares = CpuShares::new(2);
        let (a, b) = (shares.tenant("a", 1.0), shares.tenant("b", 1.0));
        let engine = Engine::default();
        let now = Instant::now();
        assert_eq!(lock(&shares.state).cap(a.0, now), 2, "alone: every permit");
        let (ta, _) = shares.acquire(a, &engine);
        shares.release(a, ta, Duration::from_millis(5));
        let (tb, _) = shares.acquire(b, &engine);
        shares.release(b, tb, Duration::from_millis(1));
        let state = lock(&shares.state);
        assert_eq!(state.cap(b.0, Instant::now()), 2, "b used less: no cap");
        assert_eq!(
            state.cap(a.0, Instant::now()),
            1,
            "a used more, b ran lately: half"
        );
        assert_eq!(
            state.cap(a.0, Instant::now() + ACTIVE_WINDOW),
            2,
            "b idle again"
        );
    }

    #[test]
    fn weights_divide_the_virtual_clock() {
        let shares = CpuShares::new(2);
        let heavy = shares.tenant("heavy", 2.0);
        let plain = shares.tenant("plain", 1.0);
        let engine = Engine::default();
        let (t1, _) = shares.acquire(heavy, &engine);
        shares.release(heavy, t1, Duration::from_millis(100));
        let (t2, _) = shares.acquire(plain, &engine);
        shares.release(plain, t2, Duration::from_millis(100));
        let state = lock(&shares.state);
        assert_eq!(state.vtime(heavy.0) * 2.0, state.vtime(plain.0));
        assert_eq!(state.free, 2);
    }
}
