//! The limits of one task try, the server-wide caps above them, and the store limiter that enforces
//! memory and records its peak.

use std::time::Duration;

use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// The largest plugin, in wasm bytes, that the sandbox accepts. A plugin is read whole into memory,
/// compiled, and stored in the database, so one bound keeps a hostile or mistaken file (a disk image,
/// `/dev/zero`) from exhausting any of them. 64 MiB is well above real plugins: a Python component
/// built with componentize-py, the largest common kind, is about 40 MB; the Rust plugins here are
/// under 2 MB.
pub const MAX_PLUGIN_BYTES: u64 = 64 * MIB;

/// What one try may use. Each field has a default (DESIGN.md §3) and a cap in [`Caps`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel units, roughly wasm instructions.
    pub fuel: u64,
    /// Bytes of linear memory and tables together, summed over the try's instances.
    pub memory_bytes: u64,
    /// Wall-clock time from the start of instantiation.
    pub timeout: Duration,
    /// Bytes of result on stdout; more fails the try.
    pub max_output_bytes: u64,
    /// Bytes of log on stderr kept; more is dropped behind a marker.
    pub max_log_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // 10^10 is minutes of real work, and stops a runaway loop within a few seconds.
            fuel: 10_000_000_000,
            memory_bytes: 256 * MIB,
            timeout: Duration::from_secs(600),
            // Outputs live in the store and are handed to downstream tasks: keep them small.
            max_output_bytes: MIB,
            max_log_bytes: 8 * MIB,
        }
    }
}

/// Server-wide maxima that no DAG may exceed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps(pub Limits);

impl Default for Caps {
    fn default() -> Self {
        Caps(Limits {
            fuel: 1_000_000_000_000,
            // The pooling allocator reserves address space for this much per memory slot.
            memory_bytes: 4096 * MIB,
            timeout: Duration::from_secs(24 * 3600),
            max_output_bytes: 64 * MIB,
            max_log_bytes: 64 * MIB,
        })
    }
}

impl Caps {
    /// Checks `limits` against the caps, naming every limit that is over.
    pub fn check(&self, limits: &Limits) -> Result<(), Vec<String>> {
        let cap = &self.0;
        let mut over = Vec::new();
        if limits.fuel > cap.fuel {
            over.push(format!("fuel {} is over the cap of {}", limits.fuel, cap.fuel));
        }
        if limits.memory_bytes > cap.memory_bytes {
            over.push(format!(
                "memory {} MiB is over the cap of {} MiB",
                limits.memory_bytes / MIB,
                cap.memory_bytes / MIB
            ));
        }
        if limits.timeout > cap.timeout {
            over.push(format!("timeout {:?} is over the cap of {:?}", limits.timeout, cap.timeout));
        }
        if limits.max_output_bytes > cap.max_output_bytes {
            over.push(format!(
                "output limit {} bytes is over the cap of {}",
                limits.max_output_bytes, cap.max_output_bytes
            ));
        }
        if limits.max_log_bytes > cap.max_log_bytes {
            over.push(format!("log limit {} bytes is over the cap of {}", limits.max_log_bytes, cap.max_log_bytes));
        }
        if over.is_empty() {
            Ok(())
        } else {
            Err(over)
        }
    }
}

/// Bytes a table element costs, as wasmtime counts it.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Enforces [`Limits::memory_bytes`] over all memories and tables of a store, and remembers the peak
/// and whether a growth was refused (so a later trap or exit is reported as the memory limit).
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: usize,
    current: usize,
    pub(crate) peak: usize,
    pub(crate) refused: bool,
    /// Whether instantiation is over: growths before it are the plugin's initial memories and tables.
    running: bool,
    /// When a growth was refused during instantiation: the bytes the plugin needed at that point.
    pub(crate) refused_at_start: Option<usize>,
}

impl Limiter {
    pub(crate) fn new(limit: u64) -> Self {
        Limiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            current: 0,
            peak: 0,
            refused: false,
            running: false,
            refused_at_start: None,
        }
    }

    /// Marks the end of instantiation: later growths are the plugin's own.
    pub(crate) fn started(&mut self) {
        self.running = true;
    }

    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.current - current.min(self.current) + desired;
        if total > self.limit {
            self.refused = true;
            if !self.running {
                self.refused_at_start = Some(total);
            }
            return false;
        }
        self.current = total;
        self.peak = self.peak.max(total);
        true
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(current * TABLE_ELEMENT_BYTES, desired * TABLE_ELEMENT_BYTES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_sums_memories_and_refuses_past_the_limit() {
        let mut limiter = Limiter::new(100);
        assert!(limiter.grow(0, 60));
        assert!(limiter.grow(0, 30));
        assert!(!limiter.grow(60, 80));
        assert!(limiter.refused);
        assert_eq!(limiter.peak, 90);
        assert!(limiter.grow(30, 40));
        assert_eq!(limiter.peak, 100);
    }

    #[test]
    fn a_refusal_before_the_start_says_what_was_needed() {
        let mut limiter = Limiter::new(100);
        assert!(!limiter.grow(0, 160));
        assert_eq!(limiter.refused_at_start, Some(160));
        let mut limiter = Limiter::new(100);
        assert!(limiter.grow(0, 60));
        limiter.started();
        assert!(!limiter.grow(60, 160));
        assert!(limiter.refused);
        assert_eq!(limiter.refused_at_start, None);
    }

    #[test]
    fn caps_name_every_limit_that_is_over() {
        let limits = Limits { fuel: u64::MAX, memory_bytes: u64::MAX, ..Limits::default() };
        let over = Caps::default().check(&limits).unwrap_err();
        assert_eq!(over.len(), 2, "{over:?}");
        assert!(over[0].starts_with("fuel "), "{over:?}");
        assert!(Caps::default().check(&Limits::default()).is_ok());
    }
}
