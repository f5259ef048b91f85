//! Which processes run a scale-out job right now, for the per-batch figures ("3 processes in
//! the job"). Kafka's group knows its members, but the clients cannot ask it here (the test
//! broker describes a running group as having none to librdkafka; docs/SCALE-OUT.md), so the
//! processes say it themselves in the directory they already share: each holds an exclusive
//! lock (`flock`) on a file of its own under `<checkpoint-dir>/members/` for as long as it
//! lives, and writes into it how many tasks it owns after each rebalance. A process that dies,
//! even by SIGKILL, lets go of its lock at once (the kernel releases it), so counting the
//! locked files with at least one task gives the processes taking part, without a heartbeat
//! to time out. A file nobody holds is a dead process's and is removed by whoever counts.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// This process's presence in a job: its file, locked while it lives.
pub(super) struct Presence {
    file: File,
    path: PathBuf,
}

/// The directory of the members' files.
fn members_dir(checkpoint_dir: &Path) -> PathBuf {
    checkpoint_dir.join("members")
}

/// Where a file is made before it is locked: counters skip these names.
const PENDING: &str = ".pending-";

impl Presence {
    /// Announces this process in the job whose checkpoints are in `checkpoint_dir`, under a
    /// name unique to it (`label`, the process id and the time), owning no task yet.
    pub fn announce(checkpoint_dir: &Path, label: &str, now_ms: u64) -> Result<Presence> {
        let dir = members_dir(checkpoint_dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        // A member id is the user's: only its plain characters go into a file name.
        let label: String = label
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
                _ => '_',
            })
            .collect();
        let name = format!("{label}-{}-{now_ms}", std::process::id());
        // Locked under a name counters skip, then renamed (the lock goes with the file): a
        // counter must never find it unlocked and take it for a dead process's.
        let pending = dir.join(format!("{PENDING}{name}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&pending)
            .with_context(|| format!("cannot create {}", pending.display()))?;
        file.try_lock()
            .with_context(|| format!("cannot lock {}", pending.display()))?;
        let path = dir.join(name);
        std::fs::rename(&pending, &path)
            .with_context(|| format!("cannot rename {}", pending.display()))?;
        let presence = Presence { file, path };
        presence.set_tasks(0)?;
        Ok(presence)
    }

    /// Says that this process owns `tasks` tasks now.
    pub fn set_tasks(&self, tasks: usize) -> Result<()> {
        // One small write at the start of the file, of a fixed width: a counter reads either
        // the old number or the new one.
        let mut file = &self.file;
        file.rewind()?;
        file.write_all(format!("{tasks:>10}\n").as_bytes())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        // The lock goes with the descriptor; the file would be removed by the next count.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How many processes take part in the job whose checkpoints are in `checkpoint_dir`: those
/// alive (their file locked) that own at least one task. Removes dead processes' files.
pub(super) fn count(checkpoint_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(members_dir(checkpoint_dir)) else {
        return 0;
    };
    let mut taking_part = 0;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(PENDING) {
            continue;
        }
        let path = entry.path();
        let Ok(mut file) = File::open(&path) else {
            continue; // removed meanwhile
        };
        match file.try_lock_shared() {
            // Nobody holds it: its process has ended.
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let tasks = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse::<usize>().ok());
                if tasks.is_some_and(|t| t > 0) {
                    taking_part += 1;
                }
            }
            Err(TryLockError::Error(_)) => {}
        }
    }
    taking_part
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_living_processes_that_own_tasks() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(count(dir.path()), 0);
        let a = Presence::announce(dir.path(), "a", 1).unwrap();
        let b = Presence::announce(dir.path(), "b", 1).unwrap();
        assert_eq!(count(dir.path()), 0, "no task owned yet");
        a.set_tasks(3).unwrap();
        b.set_tasks(12).unwrap();
        assert_eq!(count(dir.path()), 2);
        b.set_tasks(0).unwrap();
        assert_eq!(count(dir.path()), 1);
        b.set_tasks(1).unwrap();
        drop(a);
        assert_eq!(count(dir.path()), 1);
        // A process that died: its file is left, unlocked; counting removes it.
        let dead = members_dir(dir.path()).join("dead-1-1");
        std::fs::write(&dead, format!("{:>10}\n", 4)).unwrap();
        assert_eq!(count(dir.path()), 1);
        assert!(!dead.exists());
        drop(b);
        assert_eq!(count(dir.path()), 0);
    }
}
