//! WASI host calls that can wait, bounded by the current call's deadline.
//!
//! Epoch interruption only stops Wasm code. A guest that waits inside a host function (a sleep
//! or a clock subscription in `poll`, a blocking stream read or write, a filesystem call on a
//! slow or hung file system) runs no Wasm while it waits, so no epoch check would end the call,
//! and it would hold its worker past `call-time` (forever, for a long enough wait). Every WASI
//! function that can wait is therefore replaced here with one that waits at most until the
//! call's deadline and then fails the call with the call-time limit's error, as a loop would.
//!
//! wasmtime-wasi runs every filesystem operation on a blocking thread and awaits it (we never
//! let it block the calling thread), so each wait here is a future that can be abandoned. An
//! abandoned operation's thread still finishes its system call, or stays stuck in it; opening a
//! FIFO or a device, the one way a granted directory turns an open or a read into an endless
//! wait, is refused before it is tried (see `open_regular`), so that no tenant can pile up
//! stuck threads.

use super::host::HostState;
use std::future::Future;
use std::time::Instant;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable, ResourceType};
use wasmtime_wasi::filesystem::{WasiFilesystemCtxView, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as fs, DescriptorType, ErrorCode, HostDescriptor as _, HostDirectoryEntryStream as _,
};
use wasmtime_wasi::p2::{FsResult, StreamResult};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    self, HostInputStream as _, HostOutputStream as _,
};
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

/// The WASI version of the interfaces replaced here: the one wasmtime-wasi defines (guests
/// importing an earlier 0.2 version link to it too).
const POLL: &str = "wasi:io/poll@0.2.12";
const STREAMS: &str = "wasi:io/streams@0.2.12";
const FILESYSTEM: &str = "wasi:filesystem/types@0.2.12";

/// Waits for `wait` until `deadline`: None when the deadline came first.
fn within<F: Future>(deadline: Option<Instant>, wait: F) -> Option<F::Output> {
    in_tokio(async move {
        match deadline {
            Some(at) => tokio::time::timeout_at(at.into(), wait).await.ok(),
            None => Some(wait.await),
        }
    })
}

/// Replaces each WIT function `$name` of `$instance` with one that runs `$call` (a future made
/// of the view `$view`, which `$make` takes of the host state, and of the function's
/// arguments) until the call's deadline, and turns its result into the function's with
/// `$finish`.
macro_rules! bounded {
    ($instance:ident, $view:ident = $make:path, $finish:path, {
        $($name:literal ($($arg:ident),*) => $call:expr,)*
    }) => {
        $(
            $instance.func_wrap(
                $name,
                |mut store: StoreContextMut<'_, HostState>, ($($arg,)*)| {
                    let state = store.data_mut();
                    let deadline = state.deadline();
                    // Waiting on the host uses no CPU: the permit goes to others meanwhile.
                    let held = state.give_cpu();
                    let finished = {
                        #[allow(unused_mut)]
                        let mut $view = $make(state);
                        within(deadline, $call).map(|result| $finish(&mut $view, result))
                    };
                    if held {
                        store.data_mut().take_cpu();
                    }
                    finished.unwrap_or_else(|| {
                        Err(store.data().past_deadline(concat!("wait in ", $name)))
                    })
                },
            )?;
        )*
    };
}

/// Replaces the destructor of resource `$name` (host type `$type`) of `$instance` with one
/// that runs `$drop` until the call's deadline.
macro_rules! bounded_drop {
    ($instance:ident, $name:literal, $type:ty, $drop:path) => {
        $instance.resource(
            $name,
            ResourceType::host::<$type>(),
            |mut store: StoreContextMut<'_, HostState>, rep| {
                let state = store.data_mut();
                let deadline = state.deadline();
                let held = state.give_cpu();
                let dropped = $drop(state.table(), Resource::<$type>::new_own(rep));
                let dropped = within(deadline, dropped);
                if held {
                    store.data_mut().take_cpu();
                }
                dropped.unwrap_or_else(|| {
                    Err(store
                        .data()
                        .past_deadline(concat!("wait in [resource-drop]", $name)))
                })
            },
        )?;
    };
}

/// Replaces every WASI function that can wait with one bounded by the call's deadline.
pub fn bound_waits(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    bound_poll(linker)?;
    bound_streams(linker)?;
    bound_filesystem(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn table(state: &mut HostState) -> &mut ResourceTable {
    state.table()
}

fn filesystem(state: &mut HostState) -> WasiFilesystemCtxView<'_> {
    state.filesystem()
}

/// A result the function returns as it is (its errors trap).
fn as_is<V, T>(_: &mut V, result: wasmtime::Result<T>) -> wasmtime::Result<(T,)> {
    result.map(|value| (value,))
}

/// A function without results.
fn nothing<V>(_: &mut V, result: wasmtime::Result<()>) -> wasmtime::Result<()> {
    result
}

/// A stream function's `result<T, stream-error>`.
fn stream_result<T>(
    table: &mut &mut ResourceTable,
    result: StreamResult<T>,
) -> wasmtime::Result<(Result<T, streams::StreamError>,)> {
    Ok((match result {
        Ok(value) => Ok(value),
        Err(error) => Err(streams::Host::convert_stream_error(*table, error)?),
    },))
}

/// A filesystem function's `result<T, error-code>`.
fn fs_result<T>(
    view: &mut WasiFilesystemCtxView<'_>,
    result: FsResult<T>,
) -> wasmtime::Result<(Result<T, ErrorCode>,)> {
    Ok((match result {
        Ok(value) => Ok(value),
        Err(error) => Err(fs::Host::convert_error_code(view, error)?),
    },))
}

/// `poll` and `pollable.block`: a guest's sleep (`std::thread::sleep`) or clock subscription.
fn bound_poll(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let mut poll = linker.instance(POLL)?;
    bounded!(poll, t = table, as_is, {
        "poll" (pollables) => t.poll(pollables),
    });
    bounded!(poll, t = table, nothing, {
        "[method]pollable.block" (pollable) => t.block(pollable),
    });
    Ok(())
}

/// The blocking stream operations, and dropping a stream (which waits for its last write).
fn bound_streams(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let mut s = linker.instance(STREAMS)?;
    bounded!(s, t = table, stream_result, {
        "[method]input-stream.blocking-read" (stream, len) => t.blocking_read(stream, len),
        "[method]input-stream.blocking-skip" (stream, len) => t.blocking_skip(stream, len),
        "[method]output-stream.blocking-write-and-flush" (stream, bytes) =>
            t.blocking_write_and_flush(stream, bytes),
        "[method]output-stream.blocking-write-zeroes-and-flush" (stream, len) =>
            t.blocking_write_zeroes_and_flush(stream, len),
        "[method]output-stream.blocking-flush" (stream) => t.blocking_flush(stream),
        "[method]output-stream.blocking-splice" (stream, source, len) =>
            t.blocking_splice(stream, source, len),
    });
    bounded_drop!(
        s,
        "input-stream",
        DynInputStream,
        streams::HostInputStream::drop
    );
    bounded_drop!(
        s,
        "output-stream",
        DynOutputStream,
        streams::HostOutputStream::drop
    );
    Ok(())
}

/// Whether a file of this type may be opened: FIFOs, devices and sockets may not, since opening
/// or reading one can wait for ever (a FIFO without a writer, a terminal, a tape).
fn openable(kind: DescriptorType) -> bool {
    matches!(
        kind,
        DescriptorType::RegularFile | DescriptorType::Directory | DescriptorType::SymbolicLink
    )
}

/// `open-at`, refusing (with `access`) what [`openable`] refuses. The type is read first, by
/// the same path and with the same symlink rule as the open; a missing file is left to the
/// open (which creates it, or says it is missing).
async fn open_regular(
    view: &mut WasiFilesystemCtxView<'_>,
    dir: Resource<fs::Descriptor>,
    path_flags: fs::PathFlags,
    path: String,
    open_flags: fs::OpenFlags,
    flags: fs::DescriptorFlags,
) -> FsResult<Resource<fs::Descriptor>> {
    let same_dir = Resource::<fs::Descriptor>::new_borrow(dir.rep());
    if let Ok(stat) = view.stat_at(same_dir, path_flags, path.clone()).await
        && !openable(stat.type_)
    {
        return Err(ErrorCode::Access.into());
    }
    view.open_at(dir, path_flags, path, open_flags, flags).await
}

/// Every filesystem operation (each runs on a blocking thread that a hung file system can hold).
fn bound_filesystem(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let mut f = linker.instance(FILESYSTEM)?;
    bounded!(f, v = filesystem, fs_result, {
        "[method]descriptor.open-at" (dir, path_flags, path, open_flags, flags) =>
            open_regular(&mut v, dir, path_flags, path, open_flags, flags),
        "[method]descriptor.advise" (fd, offset, len, advice) => v.advise(fd, offset, len, advice),
        "[method]descriptor.sync-data" (fd) => v.sync_data(fd),
        "[method]descriptor.get-flags" (fd) => v.get_flags(fd),
        "[method]descriptor.get-type" (fd) => v.get_type(fd),
        "[method]descriptor.set-size" (fd, size) => v.set_size(fd, size),
        "[method]descriptor.set-times" (fd, accessed, modified) =>
            v.set_times(fd, accessed, modified),
        "[method]descriptor.read" (fd, len, offset) => v.read(fd, len, offset),
        "[method]descriptor.write" (fd, buffer, offset) => v.write(fd, buffer, offset),
        "[method]descriptor.read-directory" (fd) => v.read_directory(fd),
        "[method]descriptor.sync" (fd) => v.sync(fd),
        "[method]descriptor.create-directory-at" (fd, path) => v.create_directory_at(fd, path),
        "[method]descriptor.stat" (fd) => v.stat(fd),
        "[method]descriptor.stat-at" (fd, path_flags, path) => v.stat_at(fd, path_flags, path),
        "[method]descriptor.set-times-at" (fd, path_flags, path, accessed, modified) =>
            v.set_times_at(fd, path_flags, path, accessed, modified),
        "[method]descriptor.link-at" (fd, old_flags, old_path, new_dir, new_path) =>
            v.link_at(fd, old_flags, old_path, new_dir, new_path),
        "[method]descriptor.readlink-at" (fd, path) => v.readlink_at(fd, path),
        "[method]descriptor.remove-directory-at" (fd, path) => v.remove_directory_at(fd, path),
        "[method]descriptor.rename-at" (fd, old_path, new_dir, new_path) =>
            v.rename_at(fd, old_path, new_dir, new_path),
        "[method]descriptor.symlink-at" (fd, old_path, new_path) =>
            v.symlink_at(fd, old_path, new_path),
        "[method]descriptor.unlink-file-at" (fd, path) => v.unlink_file_at(fd, path),
    });
    bounded!(f, v = filesystem, as_is, {
        "[method]descriptor.is-same-object" (fd, other) => v.is_same_object(fd, other),
    });
    bounded!(f, v = filesystem, fs_result, {
        "[method]descriptor.metadata-hash" (fd) => v.metadata_hash(fd),
        "[method]descriptor.metadata-hash-at" (fd, path_flags, path) =>
            v.metadata_hash_at(fd, path_flags, path),
        "[method]directory-entry-stream.read-directory-entry" (entries) =>
            v.read_directory_entry(entries),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_wait_ends_at_the_deadline_and_a_quick_one_finishes() {
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(within(Some(soon), std::future::pending::<()>()), None);
        assert_eq!(within(Some(soon), async { 7 }), Some(7));
        assert_eq!(within(None, async { 7 }), Some(7));
    }

    #[test]
    fn only_files_and_directories_open() {
        assert!(openable(DescriptorType::RegularFile));
        assert!(openable(DescriptorType::Directory));
        for refused in [
            DescriptorType::Fifo,
            DescriptorType::CharacterDevice,
            DescriptorType::BlockDevice,
            DescriptorType::Socket,
            DescriptorType::Unknown,
        ] {
            assert!(!openable(refused), "{refused:?}");
        }
    }
}
