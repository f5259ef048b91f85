//! The on-disk cache of compiled components, keyed by content hash and engine settings.

use anyhow::Result;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept between runs (none: compile every time).
#[derive(Clone, Debug)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// No cache: every job compiles its components.
    pub fn disabled() -> Self {
        ComponentCache { dir: None }
    }

    /// The default place: `$SPATE_CACHE_DIR`, else `$XDG_CACHE_HOME/spate`, else
    /// `~/.cache/spate`; disabled when none of them is set.
    pub fn default_location() -> Self {
        let dir = std::env::var_os("SPATE_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| Path::new(&d).join("spate")))
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/spate")));
        ComponentCache { dir }
    }

    /// The compiled form of `wasm`, from the cache when present and valid, else compiled (and
    /// stored). A cache that cannot be read or written only costs a compilation.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> Result<Component> {
        let Some(dir) = &self.dir else {
            return Ok(Component::new(engine, wasm)?);
        };
        let path = dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
        if path.exists() {
            // SAFETY: the file is one this cache wrote with `precompile_component` for an engine
            // with the same compatibility hash (part of the key); wasmtime still checks its header.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(
                    "ignoring unusable cached component {}: {e:#}",
                    path.display()
                ),
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        if let Err(e) = store_atomically(dir, &path, &compiled) {
            tracing::debug!("not caching compiled component at {}: {e}", path.display());
        }
        // SAFETY: the bytes were produced by `precompile_component` on this very engine.
        Ok(unsafe { Component::deserialize(engine, &compiled) }?)
    }
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&engine_hash.finish().to_le_bytes());
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(wasm);
    hasher.finalize().to_hex()[..32].to_owned()
}

fn store_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // Jobs plan on threads of their own and may compile one plugin at once: a temp name per
    // write, not per process.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
