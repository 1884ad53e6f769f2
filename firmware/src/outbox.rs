//! The bounded outbox: readings wait here until the hub has acknowledged
//! them, so a dropped link loses nothing that still fits.
//!
//! Readings are kept in order. The front `sent` of them have been given
//! sequence numbers and put in batches (they may already be stored); the
//! rest wait for their first send. When the outbox is full, the user's
//! [`FullPolicy`] decides: drop the oldest reading *not yet sent*, or
//! refuse the new one. Sent readings are never dropped for room: whether
//! they are stored is for the hub's answer to say.

use heapless::Vec;

/// Longest reading value (bytes). A reading is a sensor sample, not a blob.
pub const MAX_VALUE: usize = 24;

/// What to do with a new reading when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Discard the oldest unsent reading to make room (keep the freshest
    /// data; counted in `dropped`).
    DropOldest,
    /// Refuse the new reading (keep the history; counted in `refused`).
    RefuseNew,
}

/// One reading waiting for its acknowledgement.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub timestamp_ms: i64,
    len: u8,
    value: [u8; MAX_VALUE],
}

impl Reading {
    /// A reading; `None` when `value` is longer than [`MAX_VALUE`].
    pub fn new(value: &[u8], timestamp_ms: i64) -> Option<Reading> {
        if value.len() > MAX_VALUE {
            return None;
        }
        let mut bytes = [0u8; MAX_VALUE];
        bytes[..value.len()].copy_from_slice(value);
        Some(Reading { timestamp_ms, len: value.len() as u8, value: bytes })
    }

    pub fn value(&self) -> &[u8] {
        &self.value[..usize::from(self.len)]
    }
}

/// Why `push` did not keep the new reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Policy `RefuseNew`, or every reading in the outbox is already sent.
    Refused,
}

/// Readings in order, at most `N`.
pub struct Outbox<const N: usize> {
    readings: Vec<Reading, N>,
    /// How many readings at the front are in sent batches.
    sent: usize,
    policy: FullPolicy,
}

impl<const N: usize> Outbox<N> {
    pub const fn new(policy: FullPolicy) -> Self {
        Outbox { readings: Vec::new(), sent: 0, policy }
    }

    /// Adds a reading. `Ok(true)` means an older unsent reading was dropped
    /// for it.
    pub fn push(&mut self, reading: Reading) -> Result<bool, Full> {
        let mut dropped = false;
        if self.readings.is_full() {
            if self.policy == FullPolicy::RefuseNew || self.sent == self.readings.len() {
                return Err(Full::Refused);
            }
            self.readings.remove(self.sent);
            dropped = true;
        }
        self.readings.push(reading).map_err(|_| Full::Refused)?;
        Ok(dropped)
    }

    /// Readings waiting (sent or not).
    pub fn len(&self) -> usize {
        self.readings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }

    /// Readings not yet in any batch.
    pub fn unsent(&self) -> &[Reading] {
        &self.readings[self.sent..]
    }

    /// The readings `start..start + count` (positions from the front).
    pub fn range(&self, start: usize, count: usize) -> &[Reading] {
        let end = start.saturating_add(count).min(self.readings.len());
        &self.readings[start.min(end)..end]
    }

    /// Marks the next `count` unsent readings as sent.
    pub fn mark_sent(&mut self, count: usize) {
        self.sent = (self.sent + count).min(self.readings.len());
    }

    /// Removes `count` readings from the front (acknowledged, or refused by
    /// the hub for good).
    pub fn remove_front(&mut self, count: usize) {
        let count = count.min(self.readings.len());
        self.readings.rotate_left(count);
        self.readings.truncate(self.readings.len() - count);
        self.sent = self.sent.saturating_sub(count);
    }

    /// Forgets which readings were sent (they will be numbered again).
    pub fn unmark_all(&mut self) {
        self.sent = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: u8) -> Reading {
        Reading::new(&[v], i64::from(v)).unwrap()
    }

    fn values<const N: usize>(o: &Outbox<N>) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, reading) in o.range(0, N).iter().enumerate() {
            out[i] = reading.value()[0];
        }
        out
    }

    #[test]
    fn drop_oldest_discards_the_oldest_unsent_reading() {
        let mut o: Outbox<4> = Outbox::new(FullPolicy::DropOldest);
        for v in 1..=4 {
            assert_eq!(o.push(r(v)), Ok(false));
        }
        o.mark_sent(2); // 1 and 2 are on the wire
        assert_eq!(o.push(r(5)), Ok(true)); // drops 3, the oldest unsent
        assert_eq!(values(&o), [1, 2, 4, 5]);
        o.mark_sent(2);
        // Everything is sent: nothing may be dropped, so the new one is refused.
        assert_eq!(o.push(r(6)), Err(Full::Refused));
        o.remove_front(3);
        assert_eq!(o.len(), 1);
        assert_eq!(o.unsent().len(), 0);
        assert_eq!(o.push(r(7)), Ok(false));
        assert_eq!(o.unsent()[0].value(), [7]);
    }

    #[test]
    fn refuse_new_keeps_the_history() {
        let mut o: Outbox<2> = Outbox::new(FullPolicy::RefuseNew);
        assert_eq!(o.push(r(1)), Ok(false));
        assert_eq!(o.push(r(2)), Ok(false));
        assert_eq!(o.push(r(3)), Err(Full::Refused));
        assert_eq!(values(&o), [1, 2]);
    }

    #[test]
    fn oversized_values_are_refused_at_construction() {
        assert!(Reading::new(&[0; MAX_VALUE], 0).is_some());
        assert!(Reading::new(&[0; MAX_VALUE + 1], 0).is_none());
    }
}
