//! Where "now" comes from, so retention by age can be tested without
//! waiting; and noticing when the wall clock jumps (a gateway booting in
//! 1970 until NTP syncs, an operator setting the date), so that ages are
//! not judged by a clock that stepped (docs/operations.md "Clock jumps").

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch, and of
/// time that only ever moves forward at its real pace (to tell a jump of the
/// wall clock from time passing).
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;

    /// Milliseconds on a monotonic clock (from an arbitrary start).
    fn monotonic_ms(&self) -> i64 {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_millis() as i64
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A clock that only moves when told to (tests, simulations): `set` and
/// `advance` are time passing; `step` is the wall clock jumping.
#[derive(Debug, Default)]
pub struct ManualClock {
    wall: AtomicI64,
    monotonic: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock { wall: AtomicI64::new(now_ms), monotonic: AtomicI64::new(0) }
    }

    /// Time passes until `now_ms`.
    pub fn set(&self, now_ms: i64) {
        let before = self.wall.swap(now_ms, Ordering::SeqCst);
        self.monotonic.fetch_add((now_ms - before).max(0), Ordering::SeqCst);
    }

    /// `by_ms` of time pass.
    pub fn advance(&self, by_ms: i64) {
        self.wall.fetch_add(by_ms, Ordering::SeqCst);
        self.monotonic.fetch_add(by_ms.max(0), Ordering::SeqCst);
    }

    /// The wall clock jumps by `by_ms` (back when negative); no time passes.
    pub fn step(&self, by_ms: i64) {
        self.wall.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.wall.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> i64 {
        self.monotonic.load(Ordering::SeqCst)
    }
}

/// How far the wall clock may drift from the monotonic clock between two
/// looks before it counts as a jump (NTP slews far slower than this; a
/// step, a manual `date -s` or a first sync after booting in 1970 is far
/// larger).
pub const JUMP_TOLERANCE_MS: i64 = 5_000;

/// A step of the wall clock the hub saw: at `at_ms` (the new reading), by
/// `delta_ms` (positive: forward), beyond what really elapsed. Records
/// written before it were stamped on the old clock, so retention corrects
/// their ages by it; [`crate::Log::steady_ms`] leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockJump {
    pub at_ms: i64,
    pub delta_ms: i64,
}

/// Watches the wall clock against the monotonic one: between two looks
/// both should advance alike.
pub(crate) struct ClockWatch {
    clock: Arc<dyn Clock>,
    wall_ms: i64,
    monotonic_ms: i64,
}

impl ClockWatch {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> ClockWatch {
        let (wall_ms, monotonic_ms) = (clock.now_ms(), clock.monotonic_ms());
        ClockWatch { clock, wall_ms, monotonic_ms }
    }

    /// The jump, if the wall clock stepped since the last look.
    pub(crate) fn look(&mut self) -> Option<ClockJump> {
        let (wall_ms, monotonic_ms) = (self.clock.now_ms(), self.clock.monotonic_ms());
        let elapsed_ms = monotonic_ms - self.monotonic_ms;
        let delta_ms = wall_ms.saturating_sub(self.wall_ms).saturating_sub(elapsed_ms);
        (self.wall_ms, self.monotonic_ms) = (wall_ms, monotonic_ms);
        (delta_ms.abs() > JUMP_TOLERANCE_MS).then_some(ClockJump { at_ms: wall_ms, delta_ms })
    }
}
