//! Who schedules on a store: one process at a time, for now.
//!
//! Two schedulers on one store would each take the other's running tries for interrupted ones
//! and run them again. So whatever runs a scheduler on a SQLite store first takes an OS lock on a
//! file beside the database (`sandflow.scheduler-lock` next to `sandflow.db`) and holds it for its
//! whole life; a second one is refused, told the owner's pid. The OS frees the lock when its
//! holder dies, even by `kill -9`, so a crash never leaves a home locked. The file's content (the
//! owner's pid, start time and role) is only for the refusal's message: the lock decides, not the
//! content, and the file is never deleted (a process locking a new file while another holds the old
//! one would make two owners).
//!
//! On PostgreSQL the same rule holds until the scheduler is safe with several instances: the
//! owner takes a session-level advisory lock on a dedicated connection that the guard holds (see
//! `postgres/`), and records its pid and role in a row for the refusal's message. The server frees
//! the lock when that connection ends, which the owner's death ends too.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Result, Store, StoreError};

/// The process that owns scheduling on a store, as it recorded itself (in the lock file of a
/// SQLite store, in a row on PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulingOwner {
    /// Its process id.
    pub pid: u32,
    /// When it took the home.
    pub started_at: DateTime<Utc>,
    /// What it is (`standalone`, `dags backfill`...).
    pub role: String,
}

/// While this lives, this process alone may run a scheduler on the store. Dropping it (or the
/// process ending in any way) lets the next one in.
#[derive(Debug)]
pub struct SchedulingGuard {
    held: Held,
}

#[derive(Debug)]
enum Held {
    /// An in-memory store, which no other process can see.
    Private,
    /// The lock file of a SQLite store, locked.
    File(File),
    /// The connection holding a PostgreSQL advisory lock.
    Postgres(crate::postgres::Lease),
}

/// The lock file of the database at `database`.
pub fn lock_path(database: &Path) -> PathBuf {
    database.with_extension("scheduler-lock")
}

/// How long a refused process waits for the owner's details to appear in the lock file: the owner
/// writes them right after it takes the lock.
pub(crate) const OWNER_READ_ATTEMPTS: u32 = 40;

impl SchedulingGuard {
    /// Takes scheduling on the database at `database` for this process, as `role`; refused with
    /// [`StoreError::SchedulerRunning`] while another process holds it. Blocking (a refusal may wait
    /// up to a second for the owner's details): async callers use [`Store::own_scheduling`].
    ///
    /// [`Store::own_scheduling`]: crate::Store::own_scheduling
    pub fn acquire(database: &Path, role: &str) -> Result<SchedulingGuard> {
        let path = lock_path(database);
        let io = |e: std::io::Error| StoreError::LockFile { path: path.clone(), source: e };
        let mut file =
            OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::SchedulerRunning { owner: read_owner(&mut file), lock: Some(path) });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let owner = SchedulingOwner { pid: std::process::id(), started_at: Utc::now(), role: role.to_string() };
        let text = serde_json::to_string(&owner).unwrap_or_default();
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        Ok(SchedulingGuard { held: Held::File(file) })
    }

    /// The guard of a store no other process can see.
    pub(crate) fn private() -> SchedulingGuard {
        SchedulingGuard { held: Held::Private }
    }

    pub(crate) fn postgres(lease: crate::postgres::Lease) -> SchedulingGuard {
        SchedulingGuard { held: Held::Postgres(lease) }
    }

    /// Whether this process still owns scheduling: on PostgreSQL, whether the connection holding
    /// the lock still answers (if it died, the server freed the lock and a standby may have taken
    /// it: stop scheduling at once). A file lock is held for as long as the process lives.
    pub async fn check(&mut self) -> Result<()> {
        match &mut self.held {
            Held::Postgres(lease) => lease.check().await,
            Held::File(_) | Held::Private => Ok(()),
        }
    }

    /// Lets go now, and waits until the next owner may take over (dropping the guard lets go
    /// too, but on PostgreSQL the server notices the closed connection a moment later).
    pub async fn release(mut self) -> Result<()> {
        match std::mem::replace(&mut self.held, Held::Private) {
            Held::Postgres(lease) => lease.release().await,
            // Dropped here: the details wiped, the file closed, the lock freed.
            held @ (Held::File(_) | Held::Private) => {
                self.held = held;
                Ok(())
            }
        }
    }
}

impl Drop for SchedulingGuard {
    fn drop(&mut self) {
        // Wipe the details so nobody reads a gone owner's pid; closing the file frees the lock.
        // A PostgreSQL lease's connection closes as it drops, which frees its lock.
        if let Held::File(file) = &self.held {
            let _ = file.set_len(0);
        }
    }
}

impl Store {
    /// Takes scheduling on this store for this process, as `role` (shown to a process refused
    /// meanwhile): only one process may run a scheduler on a store at a time (for now, on
    /// PostgreSQL too). Hold the guard for as long as the scheduler runs. Refused with
    /// [`StoreError::SchedulerRunning`].
    pub async fn own_scheduling(&self, role: &str) -> Result<SchedulingGuard> {
        self.backend.own_scheduling(role).await
    }
}

/// The owner's details, waiting a moment for an owner that has just taken the lock to write them;
/// `None` if they never appear (or do not parse).
fn read_owner(file: &mut File) -> Option<SchedulingOwner> {
    for _ in 0..OWNER_READ_ATTEMPTS {
        let mut text = String::new();
        let read = file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut text));
        if read.is_ok() && !text.is_empty() {
            if let Ok(owner) = serde_json::from_str(&text) {
                return Some(owner);
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}
