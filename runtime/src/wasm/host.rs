//! What a Store carries for one operator instance: a WASI context that grants only what the
//! pipeline file grants the operator, its captured output, and its resource limiter.

use super::cpu_share::{self, CallShare, TenantShare};
use super::guest_output::GuestOutput;
use super::limits::{LimitExceeded, LimitKind, Limiter, Limits};
use anyhow::{Context, Result};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::{Deterministic, FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// A host directory an operator may use, as a WASI preopen (a `cap-std` directory handle:
/// paths resolve beneath it, `..` and symlinks cannot leave it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the operator sees it (`/data`).
    pub guest: String,
    /// Whether it may create, change and delete files there.
    pub writable: bool,
}

/// Everything an operator is granted beyond computing on its input. The default grants nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// The host's real clocks; without it the wall clock reads the Unix epoch and the monotonic
    /// clock stands still, so operators stay deterministic (needed to replay batches).
    pub clocks: bool,
    /// Real randomness; without it random bytes come from a fixed-seed generator.
    pub random: bool,
}

impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .dirs
            .iter()
            .map(|d| {
                format!(
                    "dir {} as {} ({})",
                    d.host.display(),
                    d.guest,
                    if d.writable {
                        "read-write"
                    } else {
                        "read-only"
                    }
                )
            })
            .collect();
        if self.clocks {
            parts.push("clocks".into());
        }
        if self.random {
            parts.push("random".into());
        }
        if parts.is_empty() {
            f.write_str("nothing (no files, network, environment, clocks or randomness)")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Per-instance host state.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory and table limits, and the instance's peak memory.
    pub limiter: Limiter,
    /// `limits.call-time`.
    call_time: Duration,
    /// When the current call must end: epoch interruption stops Wasm code then, and a wait in
    /// a host call ends then too (see `bounded_wasi`).
    deadline: Option<Instant>,
    /// The CPU permit a running call holds (`cpu_share`); none when calls are not scheduled.
    cpu: Option<CallShare>,
}

impl HostState {
    /// A call starts now: its waits in host calls end at `call-time` from now.
    pub fn start_call(&mut self) {
        self.deadline = Instant::now().checked_add(self.call_time);
    }

    /// When the current call must end.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes a CPU permit for a call (time waiting for it does not count against the call).
    pub(super) fn take_cpu(&mut self) {
        if let Some(cpu) = &mut self.cpu {
            let waited = cpu.begin();
            self.extend_deadline(waited);
        }
    }

    /// Gives the CPU permit back (the call ended, or it waits on the host); whether one was
    /// held.
    pub(super) fn give_cpu(&mut self) -> bool {
        match &mut self.cpu {
            Some(cpu) if cpu.holding() => {
                cpu.end();
                true
            }
            _ => false,
        }
    }

    fn extend_deadline(&mut self, waited: Duration) {
        if let Some(deadline) = &mut self.deadline {
            *deadline += waited;
        }
    }

    /// At an epoch check in Wasm code: hands the CPU permit over if a lighter tenant waits;
    /// the call's end when its deadline has passed.
    fn epoch_check(&mut self) -> wasmtime::Result<UpdateDeadline> {
        if let Some(cpu) = &mut self.cpu {
            let waited = cpu.checkpoint();
            self.extend_deadline(waited);
        }
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(Trap::Interrupt.into()),
            _ => Ok(UpdateDeadline::Continue(1)),
        }
    }

    /// The instance's WASI resources.
    pub(super) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The error of a wait that would outlast the call's deadline.
    pub(super) fn past_deadline(&self, waiting: &str) -> wasmtime::Error {
        wasmtime::Error::new(LimitExceeded {
            kind: LimitKind::CallTime,
            limit: humantime::format_duration(self.call_time).to_string(),
            attempted: format!("{waiting} past the end of its call"),
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A clock that always reads zero: the Unix epoch for the wall clock, a monotonic clock that
/// never advances.
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The seed of the deterministic random generator operators get without the `random` grant.
const FIXED_SEED: &[u8] = b"spate: deterministic operators replay identically";

fn fixed_random() -> Deterministic {
    // Hashed so that the bytes look random (guests seed hash maps from them).
    Deterministic::new(blake3::hash(FIXED_SEED).as_bytes().to_vec())
}

/// The WASI context for `grants`: no arguments, environment, network or stdin ever; stdout and
/// stderr into `output`; directories, clocks and randomness only as granted.
fn wasi_context(grants: &Grants, output: &GuestOutput) -> Result<WasiCtx> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(output.clone())
        .stderr(output.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if !grants.clocks {
        builder
            .wall_clock(StoppedClock)
            .monotonic_clock(StoppedClock);
    }
    if !grants.random {
        builder
            .secure_random(fixed_random())
            .insecure_random(fixed_random())
            .insecure_random_seed(0);
    }
    for dir in &grants.dirs {
        let perms = if dir.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        builder
            .preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot open granted directory {}", dir.host.display()))?;
    }
    Ok(builder.build())
}

/// A fresh store for one instance, with its grants and limits; its calls are scheduled in
/// `share` (the tenant's CPU share) when given.
pub fn new_store(
    engine: &Engine,
    output: &GuestOutput,
    (grants, limits): (&Grants, &Limits),
    share: Option<TenantShare>,
) -> Result<Store<HostState>> {
    let cpu = share.map(|share| CallShare::new(cpu_share::shares(), share, engine.clone()));
    let mut store = Store::new(
        engine,
        HostState {
            wasi: wasi_context(grants, output)?,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            call_time: limits.call_time,
            deadline: None,
            cpu,
        },
    );
    store.data_mut().start_call();
    store.limiter(|state| &mut state.limiter);
    if store.data().cpu.is_some() {
        // Every tick the call checks its deadline and whether to hand its permit over.
        store.epoch_deadline_callback(|mut context| context.data_mut().epoch_check());
    }
    arm_epoch(&mut store);
    Ok(store)
}

/// Sets the epoch deadline of the store's next call: the next tick for a scheduled store (its
/// callback checks the deadline), else the call's whole `call-time`.
pub(super) fn arm_epoch(store: &mut Store<HostState>) {
    let ticks = match store.data().cpu {
        Some(_) => 1,
        None => super::ticker::ticks_for(store.data().call_time),
    };
    store.set_epoch_deadline(ticks);
}

/// The linker every operator is linked with: WASI p2 (for the guest language's runtime) only,
/// with its waits bounded by the call's deadline.
pub fn new_linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    super::bounded_wasi::bound_waits(&mut linker)?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_print_as_spate_check_shows_them() {
        assert!(Grants::default().to_string().starts_with("nothing"));
        let grants = Grants {
            dirs: vec![DirGrant {
                host: "data/ref".into(),
                guest: "/ref".into(),
                writable: false,
            }],
            clocks: true,
            random: false,
        };
        assert_eq!(
            grants.to_string(),
            "dir data/ref as /ref (read-only), clocks"
        );
    }
}
