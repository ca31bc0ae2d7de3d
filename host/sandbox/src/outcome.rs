//! How a try ended, as a typed enum the scheduler matches on, and what it used.

use std::fmt;
use std::time::Duration;

use sandflow_sdk::TaskResult;
use serde::{Deserialize, Serialize};

use crate::PluginId;

/// How a try ended. Every variant but [`Outcome::Success`] is a failure of the try; the scheduler
/// decides whether to retry (a kill, for one, is not retried).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Exit code 0 and a valid result on stdout.
    Success {
        /// The parsed result.
        result: TaskResult,
    },
    /// The plugin exited with a non-zero code.
    ExitCode {
        /// The code.
        code: i32,
    },
    /// The plugin trapped (unreachable, out-of-bounds access, stack overflow...).
    Trap {
        /// wasmtime's description of the trap.
        message: String,
        /// The wasm backtrace, when there is one.
        backtrace: Option<String>,
    },
    /// The try used all its fuel.
    FuelExhausted {
        /// The fuel it was given.
        limit: u64,
    },
    /// A memory or table growth was refused and the plugin then failed, or its initial memory alone
    /// is over the limit, so it could not start.
    MemoryLimit {
        /// The limit in bytes.
        limit_bytes: u64,
        /// When the try could not start: the bytes of initial memory (and tables) the plugin needed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        needed_at_start: Option<u64>,
    },
    /// The wall-clock deadline passed.
    Timeout {
        /// The deadline.
        limit: Duration,
    },
    /// More than the limit was written to stdout.
    OutputTooLarge {
        /// The limit in bytes.
        limit_bytes: u64,
    },
    /// The try wrote more than its quota to `/out` (see [`crate::OutDir`]).
    OutQuotaExceeded {
        /// The quota in bytes.
        limit_bytes: u64,
    },
    /// Exit code 0 but stdout was not a valid ABI v1 result.
    InvalidResult {
        /// What was wrong with it.
        reason: String,
    },
    /// An ABI v2 operator's `run` returned its task error.
    TaskError {
        /// The operator's message.
        message: String,
    },
    /// Stopped from outside (a user cleared the task).
    Killed,
    /// The host could not run the try (instantiation failed, for instance): not the plugin's doing.
    HostError {
        /// What went wrong.
        message: String,
    },
}

impl Outcome {
    /// Whether the try succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success { .. })
    }

    /// A short, stable name for tables and metrics: `success`, `exit_code`, `fuel_exhausted`...
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Success { .. } => "success",
            Outcome::ExitCode { .. } => "exit_code",
            Outcome::Trap { .. } => "trap",
            Outcome::FuelExhausted { .. } => "fuel_exhausted",
            Outcome::MemoryLimit { .. } => "memory_limit",
            Outcome::Timeout { .. } => "timeout",
            Outcome::OutputTooLarge { .. } => "output_too_large",
            Outcome::OutQuotaExceeded { .. } => "out_quota_exceeded",
            Outcome::InvalidResult { .. } => "invalid_result",
            Outcome::TaskError { .. } => "task_error",
            Outcome::Killed => "killed",
            Outcome::HostError { .. } => "host_error",
        }
    }
}

/// One line for users, naming the figure that was hit.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success { .. } => write!(f, "success"),
            Outcome::ExitCode { code } => write!(f, "exit code {code}"),
            Outcome::Trap { message, .. } => write!(f, "trap: {message}"),
            Outcome::FuelExhausted { limit } => write!(f, "fuel exhausted after {limit} units"),
            Outcome::MemoryLimit { limit_bytes, needed_at_start: None } => {
                write!(f, "memory limit of {} reached", human_bytes(*limit_bytes))
            }
            Outcome::MemoryLimit { limit_bytes, needed_at_start: Some(needed) } => write!(
                f,
                "this plugin needs {} at start; the limit is {}",
                human_bytes(*needed),
                human_bytes(*limit_bytes)
            ),
            Outcome::Timeout { limit } => write!(f, "timed out after {}", human_duration(*limit)),
            Outcome::OutputTooLarge { limit_bytes } => {
                write!(f, "output too large: more than {} on stdout", human_bytes(*limit_bytes))
            }
            Outcome::OutQuotaExceeded { limit_bytes } => {
                write!(f, "/out quota exceeded: more than {} written", human_bytes(*limit_bytes))
            }
            Outcome::InvalidResult { reason } => write!(f, "invalid result JSON: {reason}"),
            Outcome::TaskError { message } => write!(f, "the task failed: {message}"),
            Outcome::Killed => write!(f, "killed"),
            Outcome::HostError { message } => write!(f, "host error: {message}"),
        }
    }
}

/// Bytes for humans: `256 MiB` when exact, else `1.1 MiB`, `12.5 KiB` or `512 bytes`; from 1 GiB on
/// always with one decimal (`1.0 GiB`, `2.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    if bytes >= GIB {
        return format!("{:.1} GiB", bytes as f64 / GIB as f64);
    }
    let (unit, name) = match bytes {
        b if b >= MIB => (MIB, "MiB"),
        b if b >= KIB => (KIB, "KiB"),
        _ => return format!("{bytes} bytes"),
    };
    if bytes.is_multiple_of(unit) {
        format!("{} {name}", bytes / unit)
    } else {
        format!("{:.1} {name}", bytes as f64 / unit as f64)
    }
}

/// A duration for humans: `10m`, `1.5s`, `300ms`, `2.4ms` or `35µs`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if d.as_secs() >= 60 && d.as_secs().is_multiple_of(60) && d.subsec_nanos() == 0 {
        format!("{}m", d.as_secs() / 60)
    } else if secs >= 1.0 {
        format!("{}s", (secs * 1000.0).round() / 1000.0)
    } else if d.as_micros() >= 1000 {
        let ms = secs * 1000.0;
        if d.subsec_nanos().is_multiple_of(1_000_000) {
            format!("{}ms", d.as_millis())
        } else {
            format!("{ms:.1}ms")
        }
    } else {
        format!("{}µs", d.as_micros())
    }
}

/// Everything a try reports: its outcome, its raw output and log, and what it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TryReport {
    /// The plugin that ran.
    pub plugin: PluginId,
    /// How it ended.
    pub outcome: Outcome,
    /// The log (stderr), with a truncation marker and, after a trap, the trap and its backtrace.
    pub log: String,
    /// Fuel consumed (0 when fuel metering is off).
    pub fuel_used: u64,
    /// Peak bytes of linear memory and tables.
    pub peak_memory_bytes: u64,
    /// Wall-clock time of the try, from instantiation to end.
    pub wall_time: Duration,
    /// The last progress the try reported (ABI v2's `host.progress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::Progress>,
    /// The seed and clock start the try ran with: the same ones replay it byte for byte.
    #[serde(default)]
    pub determinism: crate::Determinism,
    /// What the try did over HTTP; `None` when it made no request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::HttpReport>,
    /// Bytes of regular files in `/out` when the try ended (0 without `/out`).
    #[serde(default)]
    pub out_bytes: u64,
}

impl fmt::Display for TryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (plugin {})", self.outcome, self.plugin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_one_line_with_the_figure() {
        assert_eq!(Outcome::FuelExhausted { limit: 1_000_000 }.to_string(), "fuel exhausted after 1000000 units");
        assert_eq!(
            Outcome::MemoryLimit { limit_bytes: 256 << 20, needed_at_start: None }.to_string(),
            "memory limit of 256 MiB reached"
        );
        assert_eq!(
            Outcome::MemoryLimit { limit_bytes: 16 << 20, needed_at_start: Some(17 << 20) }.to_string(),
            "this plugin needs 17 MiB at start; the limit is 16 MiB"
        );
        assert_eq!(Outcome::Timeout { limit: Duration::from_millis(1500) }.to_string(), "timed out after 1.5s");
        assert_eq!(Outcome::Timeout { limit: Duration::from_secs(600) }.to_string(), "timed out after 10m");
        assert_eq!(
            Outcome::OutputTooLarge { limit_bytes: 1 << 20 }.to_string(),
            "output too large: more than 1 MiB on stdout"
        );
        assert_eq!(Outcome::ExitCode { code: 3 }.to_string(), "exit code 3");
        assert_eq!(
            Outcome::OutQuotaExceeded { limit_bytes: 1 << 30 }.to_string(),
            "/out quota exceeded: more than 1.0 GiB written"
        );
        assert_eq!(Outcome::OutQuotaExceeded { limit_bytes: 64 << 20 }.name(), "out_quota_exceeded");
        assert_eq!(human_bytes(5 << 29), "2.5 GiB");
        assert_eq!(human_bytes(1_114_752), "1.1 MiB");
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_duration(Duration::from_micros(2_400)), "2.4ms");
        assert_eq!(human_duration(Duration::from_micros(35)), "35µs");
    }

    #[test]
    fn outcomes_serialise_with_a_kind_tag() {
        let json = serde_json::to_value(Outcome::ExitCode { code: 3 }).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "exit_code", "code": 3}));
        let json = serde_json::to_value(Outcome::MemoryLimit { limit_bytes: 1 << 20, needed_at_start: None }).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "memory_limit", "limit_bytes": 1 << 20}), "unchanged when running");
    }
}
