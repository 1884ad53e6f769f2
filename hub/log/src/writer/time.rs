//! The writer's eye on the wall clock: a jump seen between two commit
//! groups (or at open: a clock behind its last reading) is stored with
//! where every partition ended, so retention can tell which batches were
//! stamped on the old clock (`jumps.rs`).

use std::sync::atomic::Ordering;

use redb::ReadableDatabase;

use crate::clock::{ClockJump, ClockWatch};
use crate::jumps::{self, StoredJump};
use crate::Result;

use super::Writer;

impl Writer {
    /// Loads the stored jumps and starts watching the clock; a clock found
    /// behind the last reading stored was set back while the log was closed
    /// (the time it was closed is unknown: the jump counts from there).
    pub(super) fn start_clock_watch(&mut self) -> Result<()> {
        let txn = self.db()?.begin_read().map_err(crate::LogError::storage)?;
        self.jumps = jumps::load(&txn)?;
        let last = jumps::last_wall_clock(&txn)?;
        drop(txn);
        self.watch = Some(ClockWatch::new(self.options.clock.clone()));
        let now = self.options.clock.now_ms();
        if let Some(last) = last.filter(|last| now < last - crate::clock::JUMP_TOLERANCE_MS) {
            self.record_jump(ClockJump { at_ms: now, delta_ms: now - last })?;
        }
        self.publish_jumps();
        Ok(())
    }

    /// One look at the clock (each commit group, and the ticker's flush at
    /// least once a second when idle).
    pub(super) fn watch_clock(&mut self) {
        let Some(jump) = self.watch.as_mut().and_then(ClockWatch::look) else { return };
        if let Err(err) = self.record_jump(jump) {
            tracing::error!(error = %err, "cannot store a clock jump");
        }
    }

    fn record_jump(&mut self, jump: ClockJump) -> Result<()> {
        tracing::warn!(
            delta_ms = jump.delta_ms,
            now_ms = jump.at_ms,
            "the system clock jumped; ages of records and sessions from before it are taken without the jump"
        );
        let ends =
            self.topics.values().flat_map(|t| t.parts.iter().enumerate().map(|(p, s)| ((t.meta.id, p as u32), s.next)));
        let stored = StoredJump { jump, ends: ends.collect() };
        let txn = self.begin(true)?;
        jumps::store(&txn, self.jumps.len() as u64, &stored)?;
        jumps::save_wall_clock(&txn, jump.at_ms)?;
        self.commit(txn, true)?;
        self.jumps.push(stored);
        self.catalog.stats.clock_jumps.fetch_add(1, Ordering::Relaxed);
        self.publish_jumps();
        Ok(())
    }

    /// Stores the clock's reading, so a clock set back while the log is
    /// closed is noticed at the next open.
    pub(super) fn save_wall_clock(&mut self) -> Result<()> {
        let txn = self.begin(true)?;
        jumps::save_wall_clock(&txn, self.options.clock.now_ms())?;
        self.commit(txn, true)
    }

    /// What readers see (`Log::clock_jumps`, `Log::steady_ms`).
    fn publish_jumps(&self) {
        let jumped: i64 = self.jumps.iter().map(|j| j.jump.delta_ms).sum();
        *self.catalog.clock_jumps.write().expect("lock poisoned") = self.jumps.iter().map(|j| j.jump).collect();
        let clock = &self.options.clock;
        let steady = clock.now_ms().saturating_sub(jumped);
        self.catalog.steady_offset_ms.store(steady.saturating_sub(clock.monotonic_ms()), Ordering::Relaxed);
    }
}
