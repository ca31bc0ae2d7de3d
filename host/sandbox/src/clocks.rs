//! Sleeps move the virtual clock ([`crate::Determinism`]): a plugin that sleeps 100 ms and then
//! reads the clock sees 100 ms more (plus one step), on every run. wasmtime-wasi has no hook for
//! this, so the functions that sleep are ours: `wasi_snapshot_preview1::poll_oneoff` (core modules)
//! and `wasi:clocks/monotonic-clock`'s `subscribe-duration` and `subscribe-instant` (components).
//! The real sleep still happens, so a plugin that waits still takes its time (and a kill or a
//! deadline still stops it: the wait is a future the guard drops).

use std::time::Duration;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::Caller;
use wasmtime_wasi::p2::{DynPollable, Pollable};

use crate::grants::VirtualClock;

/// What `poll_oneoff` needs from a core module's store.
pub(crate) trait P1Clock: Send + 'static {
    fn clock(&self) -> &VirtualClock;
}

/// What the wrapped subscriptions need from a component's store.
pub(crate) trait P2Clock: Send + 'static {
    fn clock_and_table(&mut self) -> (&VirtualClock, &mut ResourceTable);
}

/// The bytes of a preview1 `subscription` and `event`, and the codes used (witx).
const SUBSCRIPTION_BYTES: usize = 48;
const EVENT_BYTES: usize = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const CLOCKID_REALTIME: u32 = 0;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
/// More subscriptions than any guest needs; a guard against a huge allocation.
const MAX_SUBSCRIPTIONS: usize = 4096;

/// One subscription, as read from the guest's memory.
struct Subscription {
    userdata: u64,
    /// `None` for an fd subscription (fd_read 1, fd_write 2: the tag is the event type).
    clock: Option<ClockSub>,
    tag: u8,
}

struct ClockSub {
    id: u32,
    timeout: u64,
    absolute: bool,
}

/// Replaces wasmtime-wasi's `poll_oneoff` (which reads the host's clock for its waits). Clock
/// subscriptions are waited for in real time and move the virtual clock to their deadline; the
/// earliest fires. An fd subscription is ready at once: every descriptor a try has (stdin and
/// stdout in memory, files, directories; no sockets) is always ready, as wasmtime-wasi also
/// answers, so a poll with one returns its fd events without waiting (`nbytes` 0: unknown).
/// Must come after `wasmtime_wasi::p1::add_to_linker_async`.
pub(crate) fn define_poll_oneoff<T: P1Clock>(linker: &mut wasmtime::Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut caller: Caller<'_, T>, (subs, events, count, written): (i32, i32, i32, i32)| {
            Box::new(async move {
                let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
                    wasmtime::bail!("poll_oneoff: the module exports no memory");
                };
                let count = count as u32 as usize;
                if count == 0 {
                    return Ok(ERRNO_INVAL);
                }
                if count > MAX_SUBSCRIPTIONS {
                    return Ok(ERRNO_INVAL);
                }
                let Some(subscriptions) = read_subscriptions(memory.data(&caller), subs as u32 as usize, count) else {
                    return Ok(ERRNO_FAULT);
                };
                let fds: Vec<&Subscription> = subscriptions.iter().filter(|s| s.clock.is_none()).collect();
                let fired: Vec<(u64, u8)> = if !fds.is_empty() {
                    fds.iter().map(|s| (s.userdata, s.tag)).collect()
                } else {
                    let clock = caller.data().clock().clone();
                    let now = clock.peek();
                    let deadline = |c: &ClockSub| match (c.absolute, c.id) {
                        (false, _) => now.saturating_add(c.timeout),
                        (true, CLOCKID_REALTIME) => c.timeout.saturating_sub(clock.start_ns()),
                        (true, _) => c.timeout,
                    };
                    let deadlines: Vec<(u64, u64)> = subscriptions
                        .iter()
                        .filter_map(|s| s.clock.as_ref().map(|c| (s.userdata, deadline(c))))
                        .collect();
                    let first = deadlines.iter().map(|(_, d)| *d).min().unwrap_or(now);
                    tokio::time::sleep(Duration::from_nanos(first.saturating_sub(now))).await;
                    clock.advance_to(first);
                    deadlines.iter().filter(|(_, d)| *d == first).map(|(u, _)| (*u, EVENTTYPE_CLOCK)).collect()
                };
                let data = memory.data_mut(&mut caller);
                let events = events as u32 as usize;
                for (i, (userdata, kind)) in fired.iter().enumerate() {
                    let mut event = [0u8; EVENT_BYTES];
                    event[..8].copy_from_slice(&userdata.to_le_bytes());
                    event[10] = *kind;
                    let Some(slot) =
                        events.checked_add(i * EVENT_BYTES).and_then(|at| data.get_mut(at..at + EVENT_BYTES))
                    else {
                        return Ok(ERRNO_FAULT);
                    };
                    slot.copy_from_slice(&event);
                }
                let written = written as u32 as usize;
                let Some(slot) = data.get_mut(written..written.saturating_add(4)) else { return Ok(ERRNO_FAULT) };
                slot.copy_from_slice(&(fired.len() as u32).to_le_bytes());
                Ok(ERRNO_SUCCESS)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn read_bytes<const N: usize>(memory: &[u8], at: usize) -> Option<[u8; N]> {
    memory.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn read_subscriptions(memory: &[u8], subs: usize, count: usize) -> Option<Vec<Subscription>> {
    (0..count)
        .map(|i| {
            let at = subs.checked_add(i * SUBSCRIPTION_BYTES)?;
            let userdata = u64::from_le_bytes(read_bytes::<8>(memory, at)?);
            let [tag] = read_bytes::<1>(memory, at + 8)?;
            let clock = if tag == EVENTTYPE_CLOCK {
                Some(ClockSub {
                    id: u32::from_le_bytes(read_bytes::<4>(memory, at + 16)?),
                    timeout: u64::from_le_bytes(read_bytes::<8>(memory, at + 24)?),
                    absolute: u16::from_le_bytes(read_bytes::<2>(memory, at + 40)?) & SUBCLOCKFLAGS_ABSTIME != 0,
                })
            } else {
                None
            };
            Some(Subscription { userdata, clock, tag })
        })
        .collect()
}

/// The versioned name of the interface wasmtime-wasi 48 defines (guests importing an older 0.2.x
/// reach it through the linker's semver matching).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Shadows `subscribe-duration` and `subscribe-instant`: the virtual clock moves on to the end of
/// the wait when the plugin subscribes (it subscribes to wait), and the pollable sleeps in real time.
pub(crate) fn define_subscribe<T: P2Clock>(linker: &mut wasmtime::component::Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clocks = linker.instance(MONOTONIC_CLOCK)?;
    clocks.func_wrap("subscribe-duration", |mut store: wasmtime::StoreContextMut<'_, T>, (duration,): (u64,)| {
        let (clock, table) = store.data_mut().clock_and_table();
        clock.advance(duration);
        Ok((sleep(table, Duration::from_nanos(duration))?,))
    })?;
    clocks.func_wrap("subscribe-instant", |mut store: wasmtime::StoreContextMut<'_, T>, (when,): (u64,)| {
        let (clock, table) = store.data_mut().clock_and_table();
        let wait = when.saturating_sub(clock.peek());
        clock.advance_to(when);
        Ok((sleep(table, Duration::from_nanos(wait))?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A real-time wait, as a pollable.
struct Sleep(Option<tokio::time::Instant>);

#[async_trait::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        match self.0 {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            // Too far in the future to name: never.
            None => std::future::pending().await,
        }
    }
}

fn sleep(table: &mut ResourceTable, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
    let sleep = table.push(Sleep(tokio::time::Instant::now().checked_add(wait)))?;
    wasmtime_wasi::p2::subscribe(table, sleep)
}
