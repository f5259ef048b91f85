//! Sealed files, the unit of everything recovery trusts (checkpoints and logged batches):
//!
//! ```text
//! magic (8 bytes) | u32 LE header length | header (JSON) | payload | blake3(all before)
//! ```
//!
//! A file is written under a temporary name, fsynced, renamed into place and its directory
//! fsynced, so a crash leaves the whole file or none; a failed write (a full disk) removes the
//! staged file. Reading checks the magic, the length and the checksum before trusting anything.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const HASH: usize = 32;

/// A sealed file read back and verified.
#[derive(Debug)]
pub struct Sealed {
    /// The JSON header.
    pub header: Vec<u8>,
    /// Everything between the header and the checksum.
    pub payload: Vec<u8>,
}

/// Writes `header` and the `payload` parts to `path` atomically.
pub fn write(path: &Path, magic: &[u8; 8], header: &[u8], payload: &[&[u8]]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staged = dir.join(format!(".{name}.tmp"));
    if let Err(e) = write_staged(&staged, magic, header, payload) {
        let _ = std::fs::remove_file(&staged);
        return Err(e).with_context(|| format!("cannot write {}", staged.display()));
    }
    std::fs::rename(&staged, path)
        .with_context(|| format!("cannot rename {} into place", staged.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

fn write_staged(
    staged: &Path,
    magic: &[u8; 8],
    header: &[u8],
    payload: &[&[u8]],
) -> std::io::Result<()> {
    let mut hasher = blake3::Hasher::new();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(staged)?);
    let length = (header.len() as u32).to_le_bytes();
    for part in [&magic[..], &length, header]
        .into_iter()
        .chain(payload.iter().copied())
    {
        hasher.update(part);
        out.write_all(part)?;
    }
    out.write_all(hasher.finalize().as_bytes())?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Reads and verifies `path`.
pub fn read(path: &Path, magic: &[u8; 8]) -> Result<Sealed> {
    let mut bytes =
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() < magic.len() + 4 + HASH || &bytes[..magic.len()] != magic {
        bail!(
            "{}: not a Spate file of this kind, or truncated",
            path.display()
        );
    }
    let body = bytes.len() - HASH;
    if blake3::hash(&bytes[..body]).as_bytes() != &bytes[body..] {
        bail!(
            "{}: checksum mismatch (truncated or corrupted)",
            path.display()
        );
    }
    let header_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    if 12 + header_len > body {
        bail!("{}: header length past the end", path.display());
    }
    bytes.truncate(body);
    let payload = bytes.split_off(12 + header_len);
    bytes.drain(..12);
    Ok(Sealed {
        header: bytes,
        payload,
    })
}

/// The files of `dir` named `<prefix><zero-padded time><suffix>`, newest first, with their times.
pub fn listed(dir: &Path, prefix: &str, suffix: &str) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let time = name
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()?;
            Some((time, p))
        })
        .collect();
    files.sort();
    files.reverse();
    files
}

/// `<prefix><time, zero-padded><suffix>`: name order is time order.
pub fn name(prefix: &str, time: u64, suffix: &str) -> String {
    format!("{prefix}{time:020}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_files_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name("x-", 7, ".bin"));
        write(&path, b"TESTMAG1", b"{}", &[b"ab", b"cd"]).unwrap();
        let sealed = read(&path, b"TESTMAG1").unwrap();
        assert_eq!(
            (&sealed.header[..], &sealed.payload[..]),
            (&b"{}"[..], &b"abcd"[..])
        );
        assert!(read(&path, b"OTHERMAG").is_err());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[13] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            read(&path, b"TESTMAG1")
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        assert_eq!(listed(dir.path(), "x-", ".bin")[0].0, 7);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no staged file left"
        );
    }
}
