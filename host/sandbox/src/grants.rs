//! What a try may touch beyond its stdio: [`TryGrants`]. Directories are wasmtime-wasi preopens
//! (cap-std underneath: `..`, absolute paths and symlinks never leave a preopen), the environment is
//! a list of pairs, HTTP goes through [`crate::HttpGrant`], and [`Determinism`] makes the random
//! sources and the clocks a function of a seed and a start time, so a try can be replayed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{Rng as _, SeedableRng};
use serde::{Deserialize, Serialize};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use crate::HttpGrant;

/// What one try may touch beyond stdin, stdout and stderr. Default: nothing, fresh determinism.
#[derive(Debug, Clone, Default)]
pub struct TryGrants {
    /// Preopened read-write at guest `/out`, under a size quota.
    pub out: Option<OutDir>,
    /// Preopened read-only, e.g. guest `/in`, `/data/datasets`.
    pub read_only: Vec<ReadOnlyDir>,
    /// Environment variables, in this order.
    pub env: Vec<(String, String)>,
    /// HTTP egress (components only). `None`: every wasi:http request is refused.
    pub http: Option<HttpGrant>,
    /// The seed of the random sources and the start of the clocks.
    pub determinism: Determinism,
}

/// The try's writable output directory, preopened at guest `/out`.
///
/// The quota is enforced by watching: wasmtime-wasi has no write hook, so while the try runs the
/// sandbox walks the directory every [`OUT_WATCH_INTERVAL`] (never following symlinks) and stops
/// the try with [`crate::Outcome::OutQuotaExceeded`] once the total is over, and checks once more
/// at the end. Each entry (file, directory, symlink...) counts [`OUT_ENTRY_BYTES`] on top of its
/// bytes, so a million empty files do not pass for nothing. A try can therefore get past the quota
/// by what it writes in one interval plus one walk (at disk speed, some tens of MiB) plus at most
/// one write call already under way (bounded by the guest's memory), never more: the excess is
/// on disk until the caller cleans the directory, which is the caller's job.
#[derive(Debug, Clone)]
pub struct OutDir {
    /// The host directory; it must exist (the caller makes and removes it).
    pub host: PathBuf,
    /// The most bytes the try may leave in it.
    pub quota_bytes: u64,
}

/// A host directory the try may read, and where it sees it.
#[derive(Debug, Clone)]
pub struct ReadOnlyDir {
    /// The host directory; it must exist.
    pub host: PathBuf,
    /// The guest path, e.g. `/in` or `/data/datasets`.
    pub guest: String,
}

/// How often the size of `/out` is checked while a try runs: a few milliseconds keeps the overshoot
/// small, and a walk of a directory of a few thousand files costs well under a millisecond.
pub const OUT_WATCH_INTERVAL: Duration = Duration::from_millis(5);

/// What each entry of `/out` counts toward the quota on top of its bytes: about what a file system
/// spends on an inode and its directory entry.
pub const OUT_ENTRY_BYTES: u64 = 512;

/// The seed of a try's random sources and the start of its clocks: recorded with the try, so
/// `sandflow tasks replay` runs it again byte for byte.
///
/// With it, `wasi:random/random` and `wasi:random/insecure` are ChaCha (rand's `StdRng`) streams
/// seeded from `seed`, `insecure-seed` is derived from it, and both clocks are virtual: the wall
/// clock starts at `clock_start_ns` (Unix epoch), the monotonic clock at 0, and both advance by
/// [`CLOCK_STEP`] at every read and by the duration of every sleep the plugin asks for. Real time
/// never shows: a plugin that reads the clock twice sees the same two values on every run, however
/// busy the machine was, which is what makes a replay identical (a clock that followed real time
/// would make every timestamp, and every decision on elapsed time, differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Determinism {
    /// The seed of the random sources.
    pub seed: u64,
    /// The wall clock's start, in nanoseconds since the Unix epoch.
    pub clock_start_ns: u64,
}

/// How far the virtual clocks move at each read: time passes (a loop that waits for the clock to
/// move ends), and the same reads give the same times.
pub const CLOCK_STEP: Duration = Duration::from_micros(1);

impl Determinism {
    /// A seed from the OS's random source and a clock starting now.
    pub fn fresh() -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Determinism { seed: rand::rng().next_u64(), clock_start_ns: u64::try_from(now.as_nanos()).unwrap_or(u64::MAX) }
    }

    /// The random sources and clocks of one try, set on `wasi`.
    pub(crate) fn apply(&self, wasi: &mut WasiCtxBuilder) -> VirtualClock {
        // Three streams from one seed, so the secure and insecure sources do not repeat each other.
        let stream = |n: u64| rand::rngs::StdRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut seeds = stream(3);
        let insecure_seed = (u128::from(seeds.next_u64()) << 64) | u128::from(seeds.next_u64());
        let clock = VirtualClock { start_ns: self.clock_start_ns, elapsed_ns: Arc::new(AtomicU64::new(0)) };
        wasi.secure_random(stream(1))
            .insecure_random(stream(2))
            .insecure_random_seed(insecure_seed)
            .wall_clock(clock.clone())
            .monotonic_clock(clock.clone());
        clock
    }
}

impl Default for Determinism {
    fn default() -> Self {
        Determinism::fresh()
    }
}

/// Both clocks of a try: `start_ns` plus the virtual time elapsed (wall), or the elapsed time alone
/// (monotonic). Clones share the time.
#[derive(Debug, Clone)]
pub(crate) struct VirtualClock {
    start_ns: u64,
    elapsed_ns: Arc<AtomicU64>,
}

impl VirtualClock {
    /// Reads the elapsed time, then moves it on by one step.
    fn read(&self) -> u64 {
        self.elapsed_ns.fetch_add(CLOCK_STEP.as_nanos() as u64, Ordering::Relaxed)
    }

    /// The wall clock's start, in nanoseconds since the Unix epoch.
    pub(crate) fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// The monotonic time without reading it (no step): for the host's own sums.
    pub(crate) fn peek(&self) -> u64 {
        self.elapsed_ns.load(Ordering::Relaxed)
    }

    /// Moves the time on by `ns` (a sleep of the plugin's).
    pub(crate) fn advance(&self, ns: u64) {
        let _ = self.elapsed_ns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| Some(t.saturating_add(ns)));
    }

    /// Moves the monotonic time on to `when` if it is earlier (a sleep until an instant).
    pub(crate) fn advance_to(&self, when: u64) {
        self.elapsed_ns.fetch_max(when, Ordering::Relaxed);
    }
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        CLOCK_STEP
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.start_ns.saturating_add(self.read()))
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        CLOCK_STEP.as_nanos() as u64
    }
    fn now(&self) -> u64 {
        self.read()
    }
}

/// Why a grant could not be given to a try (the try then ends as a host error naming it).
pub(crate) fn apply_dirs(grants: &TryGrants, wasi: &mut WasiCtxBuilder) -> Result<(), String> {
    if let Some(out) = &grants.out {
        wasi.preopened_dir(&out.host, "/out", FsPerms::ReadWrite)
            .map_err(|e| format!("cannot open /out at {}: {e:#}", out.host.display()))?;
    }
    for dir in &grants.read_only {
        wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
            .map_err(|e| format!("cannot open {} at {}: {e:#}", dir.guest, dir.host.display()))?;
    }
    for (name, value) in &grants.env {
        wasi.env(name, value);
    }
    Ok(())
}

/// What a directory holds, as the quota counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Bytes of regular files.
    pub(crate) bytes: u64,
    /// Entries of every kind under the directory.
    pub(crate) entries: u64,
}

impl Usage {
    /// What counts toward the quota.
    pub(crate) fn charged(&self) -> u64 {
        self.bytes.saturating_add(self.entries.saturating_mul(OUT_ENTRY_BYTES))
    }
}

/// Walks `dir` without following symlinks. Entries that vanish during the walk (the plugin deletes
/// as it goes) are skipped.
pub(crate) fn usage(dir: &Path) -> Usage {
    let mut usage = Usage::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            usage.entries += 1;
            // `DirEntry::metadata` does not follow symlinks.
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                usage.bytes = usage.bytes.saturating_add(meta.len());
            }
        }
    }
    usage
}

/// Returns once `dir` is over `quota_bytes`; never while it stays under.
pub(crate) async fn quota_exceeded(dir: PathBuf, quota_bytes: u64) {
    loop {
        tokio::time::sleep(OUT_WATCH_INTERVAL).await;
        let dir = dir.clone();
        let used = tokio::task::spawn_blocking(move || usage(&dir)).await.unwrap_or_default();
        if used.charged() > quota_bytes {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_virtual_clock_steps_at_each_read_and_jumps_on_sleeps() {
        let mut wasi = WasiCtxBuilder::new();
        let clock = Determinism { seed: 1, clock_start_ns: 1_000_000_000 }.apply(&mut wasi);
        assert_eq!(HostMonotonicClock::now(&clock), 0);
        assert_eq!(HostMonotonicClock::now(&clock), 1_000);
        assert_eq!(HostWallClock::now(&clock), Duration::from_nanos(1_000_002_000));
        clock.advance(5_000);
        assert_eq!(HostMonotonicClock::now(&clock), 8_000);
        clock.advance_to(4_000);
        assert_eq!(clock.peek(), 9_000, "never backwards");
    }

    #[test]
    fn usage_counts_bytes_and_entries_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), vec![0u8; 24]).unwrap();
        let big = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(big.path(), vec![0u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink(big.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("root")).unwrap();
        let used = usage(dir.path());
        assert_eq!(used, Usage { bytes: 1024, entries: 5 });
        assert_eq!(used.charged(), 1024 + 5 * OUT_ENTRY_BYTES);
    }
}
