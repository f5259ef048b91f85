//! What a Store carries for one operator instance: its WASI context (granting nothing) and its
//! captured output.

use super::guest_output::GuestOutput;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Per-instance host state.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A fresh store for one instance: no preopened directories, no environment, no arguments, no
/// network (wasmtime-wasi's defaults); stdout and stderr go to `output`.
pub fn new_store(engine: &Engine, output: &GuestOutput) -> Store<HostState> {
    let wasi = WasiCtxBuilder::new()
        .stdout(output.clone())
        .stderr(output.clone())
        .build();
    Store::new(
        engine,
        HostState {
            wasi,
            table: ResourceTable::new(),
        },
    )
}

/// The linker every operator is linked with: WASI p2 (for the guest language's runtime) only.
pub fn new_linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(linker)
}
