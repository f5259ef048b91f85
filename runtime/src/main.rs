//! The `spate` command.

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    spate::cli::main()
}

/// glibc gives each thread that allocates its own malloc arena (up to 8 per core), and every
/// arena keeps the batch buffers freed into it: with receivers, the clock and the workers all
/// allocating, peak RSS grew with the thread count. One arena per core cut the word count's
/// peak RSS (2 workers) from 62 to 58 MB at the same speed; mimalloc, tried instead, doubled it
/// and ran 50% slower. Called first, before any other thread exists.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores as libc::c_int);
        }
    }
}
