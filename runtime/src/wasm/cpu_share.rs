//! Fair CPU between tenants, by Spate's own scheduling of Wasm calls. The kernel shares the
//! cores between the calls of tenants within their fair share of the cores; Spate holds back
//! the tenants over it.
//!
//! A tenant's fair share is its weighted part of the cores among the tenants active now (they
//! ran a call within the last [`ACTIVE_WINDOW`]); its use is measured over about a second
//! ([`RATE_WINDOW`]). A call of a tenant within its share runs at once, on a *pass*. A call of
//! a tenant over its share needs a *permit*: the permits go to the waiting tenant that has used
//! the least CPU for its weight (weighted fair queueing on a virtual clock per tenant), each
//! such tenant holds at most its weighted part of the cores (at least one), and together they
//! leave free as many cores as calls on passes run, and at least twice the cores the tenants
//! within their share use (at least one core), so a tenant burning CPU in every call leaves
//! cores to the light tenants' calls and to the host's work for them.
//!
//! A long call does not keep its permit: every epoch tick (and at once when a light tenant's
//! call starts or a tenant with less use waits, by advancing the holder's engine epoch) the
//! call's epoch callback checks whether it holds more than it may, or someone with a lower
//! virtual clock waits, and if so hands its permit over and waits for the next one. A call on a
//! pass whose tenant goes over its share takes a permit at its next epoch check. A call waiting
//! for host I/O (a bounded WASI wait) gives its pass or permit back while it waits.
//!
//! Time spent waiting for a permit does not count against a call's `call-time`.
//!
//! The kernel helps: a call on a permit runs at the lowest CPU priority (nice 19, a CFS weight
//! of 15 against 1024), so that on a core it shares, every other thread of the process goes
//! first: the light tenants' calls, and the host's work for them (receivers, the batch clock,
//! the shuffle, outputs), which no permit covers. Its priority is back to the process's
//! before the call takes the scheduler's lock or returns to the host, so a call preempted
//! there never holds up another thread for long (a priority inversion). Raising a thread's
//! priority back needs `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows it (`ulimit -e`); where
//! neither is there, the permits work alone, and the log says so once. `SPATE_CPU_PRIORITY=0`
//! turns it off.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// A tenant counts as active this long after it last ran a call.
const ACTIVE_WINDOW: Duration = Duration::from_secs(2);

/// The time over which a tenant's recent use of the cores is measured (the decay time of its
/// exponentially weighted rate).
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// A tenant over its share counts as within it again only once its use falls under this part
/// of its share: held at about its share by the permits, it would otherwise go back to passes
/// (every core, at the usual priority) each time its use dips under it, beside the very
/// tenants the permits make room for.
const BACK_WITHIN: f64 = 0.75;

/// How often a waiting call looks again (a tenant's activity ends without a release).
const RECHECK: Duration = Duration::from_millis(20);

/// A tenant returning from idle starts at most this much CPU time (per unit of weight) behind
/// the busiest-least tenant: short absences earn no unbounded credit.
const IDLE_CREDIT_NS: f64 = 500e6;

/// The nice value of a thread running a call on a permit: the lowest priority there is.
const OVER_SHARE_NICE: i32 = 19;

/// The process's permits and tenants.
pub struct CpuShares {
    state: Mutex<State>,
    freed: Condvar,
    /// The nice values a thread goes between, (its usual, on a permit); None: priorities are
    /// left alone.
    nice: Option<(i32, i32)>,
    /// Why priorities cannot be used here, said once a second tenant shows up (alone, a job
    /// has nobody to share with, and the quick start's log stays quiet).
    without_priority: Option<String>,
}

struct State {
    permits: usize,
    tenants: Vec<TenantClock>,
    waiting: Vec<(u64, usize)>,
    /// Calls of tenants over their share, each on a permit.
    holders: Vec<(u64, usize, Engine)>,
    /// Calls of tenants within their share running on passes.
    passes: usize,
    next_ticket: u64,
}

struct TenantClock {
    name: String,
    weight: f64,
    /// CPU nanoseconds used, divided by the weight.
    vtime: f64,
    /// When it last ran a call.
    last_active: Option<Instant>,
    /// Its calls running now (on passes or permits).
    running: usize,
    /// Its recent use, in cores: CPU seconds decayed over `RATE_WINDOW`, as of `rate_at`.
    rate: f64,
    rate_at: Instant,
    /// It was over its share when last charged.
    over: bool,
}

impl TenantClock {
    /// Its recent use in cores, as of `now`.
    fn rate(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.rate_at).as_secs_f64();
        self.rate * (-elapsed / RATE_WINDOW.as_secs_f64()).exp()
    }
}

/// A tenant's place in the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantShare(usize);

/// What a running call holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Its tenant is within its share: the kernel shares the cores.
    Pass,
    /// Its tenant is over its share: one of the permits.
    Permit,
}

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
        let mut shares = CpuShares::new(permits);
        match priority::usable() {
            Ok(nice) => shares.nice = Some(nice),
            Err(why) => shares.without_priority = why,
        }
        shares
    })
}

/// Thread priorities (Linux: `setpriority` on a thread id sets that thread's nice value).
mod priority {
    use super::OVER_SHARE_NICE;

    /// Sets the calling thread's nice value; false if refused.
    pub fn set(nice: i32) -> bool {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: plain system calls on the calling thread's own id.
            unsafe {
                let thread = libc::gettid() as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, thread, nice) == 0
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = nice;
            false
        }
    }

    /// The calling thread's nice value.
    #[cfg(all(test, target_os = "linux"))]
    pub fn current() -> i32 {
        // SAFETY: reads the calling thread's own nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    /// The nice values to go between, if a thread of this process may go down to
    /// [`OVER_SHARE_NICE`] and back (tried once, on a thread of its own); if not, why, when
    /// the reason is the process's privileges (not turned off, not already at the lowest).
    pub fn usable() -> Result<(i32, i32), Option<String>> {
        if std::env::var("SPATE_CPU_PRIORITY").is_ok_and(|v| v == "0") {
            return Err(None);
        }
        #[cfg(target_os = "linux")]
        {
            // SAFETY: reads the calling process's nice value; errno is cleared first because
            // -1 is a valid answer.
            let usual = unsafe {
                *libc::__errno_location() = 0;
                let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
                (*libc::__errno_location() == 0).then_some(nice)
            }
            .ok_or(None)?;
            if usual >= OVER_SHARE_NICE {
                return Err(None);
            }
            let works = std::thread::spawn(move || set(OVER_SHARE_NICE) && set(usual))
                .join()
                .unwrap_or(false);
            match works {
                true => Ok((usual, OVER_SHARE_NICE)),
                false => Err(Some(format!(
                    "fair CPU: calls of tenants over their share are held back by Spate's \
                     permits only: this process may not raise a thread's priority back after \
                     lowering it (it needs CAP_SYS_NICE, or `ulimit -e` of {})",
                    20 - usual
                ))),
            }
        }
        #[cfg(not(target_os = "linux"))]
        Err(None)
    }
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

    /// Whether `tenant` runs or waits for a call now.
    fn active(&self, tenant: usize) -> bool {
        self.tenants[tenant].running > 0 || self.waiting.iter().any(|w| w.1 == tenant)
    }

    /// Whether `tenant` ran a call lately (or runs or waits for one now).
    fn recently_active(&self, tenant: usize, now: Instant) -> bool {
        self.active(tenant)
            || self.tenants[tenant]
                .last_active
                .is_some_and(|at| now.duration_since(at) < ACTIVE_WINDOW)
    }

    /// The tenants active now (`tenant` counted as one).
    fn active_tenants(&self, tenant: usize, now: Instant) -> Vec<usize> {
        (0..self.tenants.len())
            .filter(|t| *t == tenant || self.recently_active(*t, now))
            .collect()
    }

    /// `tenant`'s fair share of the cores among the active tenants: its weighted part of
    /// the permits.
    fn fair_share(&self, tenant: usize, active: &[usize]) -> f64 {
        let weights: f64 = active.iter().map(|t| self.tenants[*t].weight).sum();
        self.permits as f64 * self.tenants[tenant].weight / weights
    }

    /// Whether `tenant` used more than its fair share lately, beside other active tenants.
    fn over_share(&self, tenant: usize, now: Instant) -> bool {
        self.over_share_among(tenant, &self.active_tenants(tenant, now), now)
    }

    /// Whether `tenant` used more than its fair share among `active` (which holds it) lately;
    /// once over, until its use falls under [`BACK_WITHIN`] of it.
    fn over_share_among(&self, tenant: usize, active: &[usize], now: Instant) -> bool {
        let clock = &self.tenants[tenant];
        let share = self.fair_share(tenant, active);
        let bound = if clock.over {
            BACK_WITHIN * share
        } else {
            share
        };
        active.len() > 1 && clock.rate(now) > bound
    }

    /// The most permits `tenant`, over its share, may hold: its weighted part (at least one).
    fn cap(&self, tenant: usize, now: Instant) -> usize {
        let part = self.fair_share(tenant, &self.active_tenants(tenant, now));
        (part.floor() as usize).clamp(1, self.permits)
    }

    /// The most permits the tenants over their share may hold together now: every core but
    /// those the calls on passes run on, and but twice the cores the tenants within their
    /// share used lately (at least one, while there are any).
    fn room(&self, now: Instant) -> usize {
        // The active set once, not once per tenant: this runs on every call and tick.
        let active: Vec<usize> = (0..self.tenants.len())
            .filter(|t| self.recently_active(*t, now))
            .collect();
        let within: Vec<usize> = active
            .iter()
            .copied()
            .filter(|t| !self.over_share_among(*t, &active, now))
            .collect();
        if within.is_empty() {
            return self.permits;
        }
        let used: f64 = within.iter().map(|t| self.tenants[*t].rate(now)).sum();
        let by_use = match self.permits {
            1 => 0,
            permits => ((2.0 * used).ceil() as usize).clamp(1, permits - 1),
        };
        self.permits - by_use.max(self.passes.min(self.permits))
    }

    /// Whether a holder of `tenant` should give its permit back: its tenant is within its
    /// share again (a pass will do), or its tenant or the tenants over their share hold more
    /// than they may.
    fn holds_too_many(&self, tenant: usize, now: Instant) -> bool {
        !self.over_share(tenant, now)
            || self.held(tenant) > self.cap(tenant, now)
            || self.holders.len() > self.room(now)
    }

    /// The waiter to serve next when a permit is free: the lowest virtual clock among those
    /// whose tenant holds less than its cap, then the first to come.
    fn first_waiter(&self, now: Instant) -> Option<u64> {
        if self.holders.len() >= self.room(now) {
            return None;
        }
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

    fn charge(&mut self, tenant: usize, used: Duration, now: Instant) {
        let clock = &mut self.tenants[tenant];
        clock.vtime += used.as_nanos() as f64 / clock.weight;
        clock.rate = clock.rate(now) + used.as_secs_f64() / RATE_WINDOW.as_secs_f64();
        clock.rate_at = now;
        clock.last_active = Some(now);
        let active = self.active_tenants(tenant, now);
        self.tenants[tenant].over = self.over_share_among(tenant, &active, now);
    }

    /// Asks the holder the furthest ahead of `tenant` (or any holding more than it may) to
    /// check at once whether to hand its permit over.
    fn ask_a_holder(&self, tenant: usize, now: Instant) {
        let mine = self.vtime(tenant);
        let over = self
            .holders
            .iter()
            .find(|h| h.1 != tenant && self.holds_too_many(h.1, now));
        let ahead = self
            .holders
            .iter()
            .filter(|h| self.vtime(h.1) > mine)
            .max_by(|a, b| self.vtime(a.1).total_cmp(&self.vtime(b.1)));
        if let Some((_, _, engine)) = over.or(ahead) {
            engine.increment_epoch();
        }
    }
}

impl CpuShares {
    /// `permits` calls of tenants over their share may run at once.
    pub fn new(permits: usize) -> CpuShares {
        CpuShares {
            state: Mutex::new(State {
                permits: permits.max(1),
                tenants: Vec::new(),
                waiting: Vec::new(),
                holders: Vec::new(),
                passes: 0,
                next_ticket: 0,
            }),
            freed: Condvar::new(),
            nice: None,
            without_priority: None,
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
            running: 0,
            rate: 0.0,
            rate_at: Instant::now(),
            over: false,
        });
        if let (2, Some(why)) = (state.tenants.len(), &self.without_priority) {
            tracing::info!("{why}");
        }
        TenantShare(state.tenants.len() - 1)
    }

    /// Lets a call of `tenant` running on `engine` start: at once on a pass while its tenant
    /// is within its share, else when it gets a permit. Returns its ticket, what it holds and
    /// how long it waited.
    pub fn acquire(&self, tenant: TenantShare, engine: &Engine) -> (u64, Grant, Duration) {
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
        let mut asked = false;
        state.waiting.push((ticket, tenant.0));
        loop {
            let now = Instant::now();
            let grant = if !state.over_share(tenant.0, now) {
                Some(Grant::Pass)
            } else if state.holders.len() < state.permits && state.first_waiter(now) == Some(ticket)
            {
                Some(Grant::Permit)
            } else {
                None
            };
            if let Some(grant) = grant {
                state.waiting.retain(|w| w.0 != ticket);
                match grant {
                    Grant::Pass => state.passes += 1,
                    Grant::Permit => state.holders.push((ticket, tenant.0, engine.clone())),
                }
                let clock = &mut state.tenants[tenant.0];
                clock.running += 1;
                clock.last_active = Some(now);
                if state.holders.len() > state.room(now) {
                    // Over-share holders now hold a core a light call needs.
                    state.ask_a_holder(tenant.0, now);
                }
                // Another permit may be free for the next waiter.
                self.freed.notify_all();
                return (ticket, grant, began.elapsed());
            }
            if !asked {
                state.ask_a_holder(tenant.0, now);
                asked = true;
            }
            state = self
                .freed
                .wait_timeout(state, RECHECK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Ends call `ticket` of `tenant` (holding `grant`), charging `used` CPU time.
    pub fn release(&self, tenant: TenantShare, ticket: u64, grant: Grant, used: Duration) {
        let mut state = lock(&self.state);
        state.charge(tenant.0, used, Instant::now());
        state.tenants[tenant.0].running -= 1;
        match grant {
            Grant::Pass => state.passes -= 1,
            Grant::Permit => state.holders.retain(|h| h.0 != ticket),
        }
        self.freed.notify_all();
    }

    /// Charges `used` CPU time to a call of `tenant` holding `grant`; true when it should give
    /// it back and start again: a call on a pass whose tenant went over its share, or a call
    /// on a permit that it should hand over (see [`State::holds_too_many`]) or that a tenant
    /// with a lower virtual clock waits for.
    pub fn charge_and_check(&self, tenant: TenantShare, grant: Grant, used: Duration) -> bool {
        let mut state = lock(&self.state);
        let now = Instant::now();
        state.charge(tenant.0, used, now);
        match grant {
            Grant::Pass => state.over_share(tenant.0, now),
            Grant::Permit => {
                if state.holds_too_many(tenant.0, now) {
                    return true;
                }
                let mine = state.vtime(tenant.0);
                state
                    .waiting
                    .iter()
                    .any(|w| w.1 != tenant.0 && state.vtime(w.1) < mine)
            }
        }
    }
}

/// A store's place in the schedule: its tenant and engine, and the pass or permit it holds
/// while a call runs.
pub struct CallShare {
    tenant: TenantShare,
    engine: Engine,
    shares: &'static CpuShares,
    held: Option<(u64, Grant, Instant)>,
    /// The calling thread runs at the permit's low priority.
    lowered: bool,
}

impl CallShare {
    /// The share of a store of `tenant` on `engine`, scheduled by `shares`.
    pub fn new(shares: &'static CpuShares, tenant: TenantShare, engine: Engine) -> CallShare {
        CallShare {
            tenant,
            engine,
            shares,
            held: None,
            lowered: false,
        }
    }

    /// Puts the calling thread at the permit's low priority (`low`) or back at its usual one.
    fn set_priority(&mut self, low: bool) {
        let Some((usual, on_permit)) = self.shares.nice else {
            return;
        };
        if low != self.lowered {
            priority::set(if low { on_permit } else { usual });
            self.lowered = low;
        }
    }

    /// Lets a call start (waiting for a permit if its tenant needs one); returns how long it
    /// waited.
    pub fn begin(&mut self) -> Duration {
        if self.held.is_some() {
            return Duration::ZERO;
        }
        let (ticket, grant, waited) = self.shares.acquire(self.tenant, &self.engine);
        self.held = Some((ticket, grant, Instant::now()));
        self.set_priority(grant == Grant::Permit);
        waited
    }

    /// Gives the pass or permit back (the call ended, or waits on the host).
    pub fn end(&mut self) {
        self.set_priority(false);
        if let Some((ticket, grant, since)) = self.held.take() {
            self.shares
                .release(self.tenant, ticket, grant, since.elapsed());
        }
    }

    /// At an epoch check: charges the time since the last one, and when the call should give
    /// its pass or permit back, does so and waits for what it may hold now; returns how long
    /// it waited.
    pub fn checkpoint(&mut self) -> Duration {
        let Some((ticket, grant, since)) = self.held else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        // At its usual priority while it holds the scheduler's lock.
        let lowered = self.lowered;
        self.set_priority(false);
        if self
            .shares
            .charge_and_check(self.tenant, grant, now - since)
        {
            self.held = Some((ticket, grant, now));
            self.end();
            return self.begin();
        }
        self.held = Some((ticket, grant, now));
        self.set_priority(lowered);
        Duration::ZERO
    }

    /// Whether a pass or permit is held.
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

    /// Runs one call of `tenant` that used `used`.
    fn call(shares: &CpuShares, tenant: TenantShare, used: Duration) -> Grant {
        let (ticket, grant, _) = shares.acquire(tenant, &Engine::default());
        shares.release(tenant, ticket, grant, used);
        grant
    }

    #[test]
    fn a_light_tenants_call_runs_at_once_and_a_tenant_over_its_share_steps_back_for_it() {
        let shares: &'static CpuShares = Box::leak(Box::new(CpuShares::new(1)));
        let engine = Engine::default();
        let (busy, light) = (shares.tenant("busy", 1.0), shares.tenant("light", 1.0));
        // busy used 2 s lately, light ran a call: busy is over its share of half the core.
        assert_eq!(
            call(shares, busy, Duration::from_secs(2)),
            Grant::Pass,
            "alone"
        );
        assert_eq!(call(shares, light, Duration::from_millis(1)), Grant::Pass);
        let mut holder = CallShare::new(shares, busy, engine.clone());
        holder.begin();
        assert_eq!(holder.held.map(|h| h.1), Some(Grant::Permit));
        // light's call starts at once, on a pass, although busy holds the one permit.
        let mut light_call = CallShare::new(shares, light, engine);
        assert!(light_call.begin() < Duration::from_millis(20));
        assert_eq!(light_call.held.map(|h| h.1), Some(Grant::Pass));
        // At its epoch check busy gives the core up until light's call ends.
        let stepping_back = std::thread::spawn(move || holder.checkpoint());
        std::thread::sleep(Duration::from_millis(60));
        light_call.end();
        let waited = stepping_back.join().unwrap();
        assert!(waited >= Duration::from_millis(40), "{waited:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_call_on_a_permit_runs_at_the_lowest_priority_and_gets_the_usual_one_back() {
        let Ok(nice) = priority::usable() else {
            eprintln!("skipped: this process may not raise a thread's priority back");
            return;
        };
        let mut shares = CpuShares::new(1);
        shares.nice = Some(nice);
        let shares: &'static CpuShares = Box::leak(Box::new(shares));
        let (busy, light) = (shares.tenant("busy", 1.0), shares.tenant("light", 1.0));
        call(shares, busy, Duration::from_secs(2));
        call(shares, light, Duration::from_millis(1));
        let (usual, low) = std::thread::spawn(move || {
            let mut holder = CallShare::new(shares, busy, Engine::default());
            let usual = priority::current();
            holder.begin();
            assert_eq!(holder.held.map(|h| h.1), Some(Grant::Permit));
            let on_permit = priority::current();
            holder.checkpoint();
            assert_eq!(priority::current(), on_permit, "still on its permit");
            holder.end();
            assert_eq!(priority::current(), usual, "back after the call");
            // A light tenant's call (on a pass) is left at the usual priority.
            let mut light_call = CallShare::new(shares, light, Engine::default());
            light_call.begin();
            assert_eq!(light_call.held.map(|h| h.1), Some(Grant::Pass));
            assert_eq!(priority::current(), usual);
            light_call.end();
            (usual, on_permit)
        })
        .join()
        .unwrap();
        assert_eq!((usual, low), nice);
    }

    #[test]
    fn among_tenants_over_their_share_the_one_with_less_use_goes_first() {
        let shares: &'static CpuShares = Box::leak(Box::new(CpuShares::new(1)));
        let engine = Engine::default();
        let (heavier, heavy) = (shares.tenant("heavier", 1.0), shares.tenant("heavy", 1.0));
        call(shares, heavier, Duration::from_secs(3));
        call(shares, heavy, Duration::from_secs(2));
        let mut holder = CallShare::new(shares, heavier, engine.clone());
        holder.begin();
        // Another call of each waits; when the holder hands over, heavy's goes first.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for (name, tenant) in [("heavier", heavier), ("heavy", heavy)] {
            let (order, engine) = (order.clone(), engine.clone());
            threads.push(std::thread::spawn(move || {
                let mut call = CallShare::new(shares, tenant, engine);
                call.begin();
                order.lock().unwrap().push(name);
                call.end();
            }));
            std::thread::sleep(Duration::from_millis(30));
        }
        // The holder's epoch check sees heavy waiting with less use.
        assert!(holder.checkpoint() > Duration::ZERO || !holder.holding());
        holder.end();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(order.lock().unwrap()[0], "heavy");
    }

    #[test]
    fn beside_an_active_tenant_a_tenant_over_its_share_holds_its_part_of_the_permits() {
        let shares = CpuShares::new(2);
        let (a, b) = (shares.tenant("a", 1.0), shares.tenant("b", 1.0));
        // a used 3 cores' worth in the last second (over its share of 1), b little.
        call(&shares, a, Duration::from_secs(3));
        call(&shares, b, Duration::from_millis(1));
        let state = lock(&shares.state);
        let now = Instant::now();
        assert!(!state.over_share(b.0, now), "b within its share");
        assert!(state.over_share(a.0, now), "a over it");
        assert_eq!(state.cap(a.0, now), 1, "half of the 2 permits");
        assert_eq!(state.room(now), 1, "one core kept for b");
        let later = now + ACTIVE_WINDOW;
        assert!(
            !state.over_share(a.0, later),
            "b idle again (and a's use decayed)"
        );
    }

    #[test]
    fn among_many_tenants_the_light_ones_run_freely_and_the_heavy_ones_share_what_is_left() {
        let shares = CpuShares::new(4);
        let burners = [
            shares.tenant("burner-1", 1.0),
            shares.tenant("burner-2", 1.0),
        ];
        let light: Vec<TenantShare> = (0..6)
            .map(|i| shares.tenant(&format!("light-{i}"), 1.0))
            .collect();
        for burner in burners {
            call(&shares, burner, Duration::from_secs(2));
        }
        for tenant in &light {
            assert_eq!(
                call(&shares, *tenant, Duration::from_millis(20)),
                Grant::Pass
            );
        }
        let state = lock(&shares.state);
        let now = Instant::now();
        // 8 tenants on 4 cores: a fair share is half a core. The light ones (0.02) are within
        // it; each burner (2 cores) over it, holding one permit at most.
        assert!(light.iter().all(|t| !state.over_share(t.0, now)));
        assert!(burners.iter().all(|t| state.over_share(t.0, now)));
        assert!(burners.iter().all(|t| state.cap(t.0, now) == 1));
        // The light ones used 0.12 cores lately: one core is kept for them.
        assert_eq!(state.room(now), 3);
    }

    #[test]
    fn weights_divide_the_virtual_clock() {
        let shares = CpuShares::new(2);
        let heavy = shares.tenant("heavy", 2.0);
        let plain = shares.tenant("plain", 1.0);
        call(&shares, heavy, Duration::from_millis(100));
        call(&shares, plain, Duration::from_millis(100));
        let state = lock(&shares.state);
        assert_eq!(state.vtime(heavy.0) * 2.0, state.vtime(plain.0));
        assert!(state.holders.is_empty() && state.passes == 0);
    }
}
