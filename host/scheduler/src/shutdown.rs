//! How a worker is asked to stop, and what it says while it stops.
//!
//! Stopping is two steps, because a try cut short is work thrown away and run again:
//! [`Shutdown::stop`] ends claiming and gives the running tries up to the worker's grace
//! ([`WorkerConfig::shutdown_grace`](crate::WorkerConfig::shutdown_grace)) to end by themselves
//! and be reported as any other; [`Shutdown::kill`] (an operator's second Ctrl-C), or the end of
//! the grace, kills what still runs, and the worker reports each of those as `interrupted` at once,
//! so that the scheduler retries it per its policy without waiting for its lease to expire.
//!
//! A caller with only a [`CancellationToken`] passes it (`From`): a stop whose second step is the
//! end of the grace. What the worker does meanwhile is told, as it happens, to the function given
//! to [`Shutdown::telling`]: a console prints it; the worker itself prints nothing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// What a stopping worker tells whoever stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopping {
    /// Claiming has stopped; `running` tries have up to `grace` to end by themselves.
    Draining {
        /// Tries running when the stop came.
        running: usize,
        /// How long they may take.
        grace: Duration,
    },
    /// `running` tries were still running when the grace ended (`asked: false`) or a kill was
    /// asked for (`asked: true`): they are being killed, to be reported interrupted.
    Killing {
        /// Tries being killed.
        running: usize,
        /// Whether [`Shutdown::kill`] ended the grace early.
        asked: bool,
    },
    /// The worker has stopped. `finished` tries ended by themselves after the stop and were
    /// reported as they ended; `interrupted` were killed (or had been claimed and not started)
    /// and were reported interrupted.
    Stopped {
        /// Tries that ended within the grace.
        finished: usize,
        /// Tries reported interrupted.
        interrupted: usize,
    },
}

/// Tells a worker to stop: [`Shutdown::stop`] first, [`Shutdown::kill`] to end its grace early.
/// Clones share one state.
#[derive(Clone, Default)]
pub struct Shutdown {
    stop: CancellationToken,
    kill: CancellationToken,
    tell: Option<Arc<dyn Fn(Stopping) + Send + Sync>>,
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("stopped", &self.is_stopped())
            .field("killed", &self.is_killed())
            .finish_non_exhaustive()
    }
}

impl From<CancellationToken> for Shutdown {
    fn from(stop: CancellationToken) -> Shutdown {
        Shutdown { stop, ..Shutdown::default() }
    }
}

impl Shutdown {
    /// Not stopped yet.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// The same, calling `tell` with what the worker does as it stops (from the worker's task:
    /// it should return at once).
    pub fn telling(self, tell: impl Fn(Stopping) + Send + Sync + 'static) -> Shutdown {
        Shutdown { tell: Some(Arc::new(tell)), ..self }
    }

    /// Stops claiming; running tries get the grace to end.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Ends the grace now (and stops, if not stopped yet): running tries are killed and reported
    /// interrupted.
    pub fn kill(&self) {
        self.kill.cancel();
        self.stop.cancel();
    }

    /// Whether [`Shutdown::stop`] (or [`Shutdown::kill`]) was called.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Whether [`Shutdown::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.kill.is_cancelled()
    }

    /// Resolves once stopped.
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    /// Resolves once killed.
    pub async fn killed(&self) {
        self.kill.cancelled().await;
    }

    /// Tells the caller what the worker does.
    pub(crate) fn tell(&self, what: Stopping) {
        if let Some(tell) = &self.tell {
            tell(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_stops_too_and_a_token_stops_without_killing() {
        let shutdown = Shutdown::new();
        shutdown.kill();
        assert!(shutdown.is_stopped() && shutdown.is_killed());

        let token = CancellationToken::new();
        let shutdown = Shutdown::from(token.clone());
        token.cancel();
        assert!(shutdown.is_stopped() && !shutdown.is_killed());
    }
}
