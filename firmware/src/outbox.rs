//! The bounded outbox: readings wait here until the hub has acknowledged
//! them, so a dropped link loses nothing that still fits.
//!
//! Readings are kept in order. The front `sent` of them have been given
//! sequence numbers and put in batches (they may already be stored); the
//! rest wait for their first send. When the outbox is full, the user's
//! [`FullPolicy`] decides: drop the oldest reading *not yet sent*, or
//! refuse the new one. Sent readings are never dropped for room: whether
//! they are stored is for the hub's answer to say.

use heapless::Deque;

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
        for (to, from) in bytes.iter_mut().zip(value) {
            *to = *from;
        }
        Some(Reading { timestamp_ms, len: value.len() as u8, value: bytes })
    }

    pub fn value(&self) -> &[u8] {
        self.value.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Becomes a copy of `other`, field by field: a plain `*self = *other`
    /// inside one buffer compiles to a call of the 1.5 KB `memmove` on
    /// Cortex-M, the largest function in the SDK otherwise.
    fn set(&mut self, other: &Reading) {
        self.timestamp_ms = other.timestamp_ms;
        self.len = other.len;
        for (to, from) in self.value.iter_mut().zip(other.value) {
            *to = from;
        }
    }
}

/// Why `push` did not keep the new reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Policy `RefuseNew`, or every reading in the outbox is already sent.
    Refused,
}

/// Readings in order, at most `N`, in a ring (acknowledging readings at
/// the front moves no memory).
pub struct Outbox<const N: usize> {
    readings: Deque<Reading, N>,
    /// How many readings at the front are in sent batches.
    sent: usize,
    policy: FullPolicy,
}

impl<const N: usize> Outbox<N> {
    pub const fn new(policy: FullPolicy) -> Self {
        Outbox { readings: Deque::new(), sent: 0, policy }
    }

    /// Adds a reading. `Ok(true)` means an older unsent reading was dropped
    /// for it.
    pub fn push(&mut self, reading: Reading) -> Result<bool, Full> {
        let mut dropped = false;
        if self.readings.is_full() {
            if self.policy == FullPolicy::RefuseNew || self.sent == self.readings.len() {
                return Err(Full::Refused);
            }
            // Move the oldest unsent reading to the back, keeping the order
            // of the others, and drop it.
            for i in self.sent..self.readings.len() - 1 {
                if let Some(next) = self.readings.get(i + 1).copied() {
                    if let Some(slot) = self.readings.get_mut(i) {
                        slot.set(&next);
                    }
                }
            }
            self.readings.pop_back();
            dropped = true;
        }
        self.readings.push_back(reading).map_err(|_| Full::Refused)?;
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
    pub fn unsent(&self) -> usize {
        self.readings.len() - self.sent
    }

    /// The readings `start..start + count` (positions from the front).
    pub fn range(&self, start: usize, count: usize) -> impl Iterator<Item = &Reading> + Clone {
        let (front, back) = self.readings.as_slices();
        front.iter().chain(back).skip(start).take(count)
    }

    /// Marks the next `count` unsent readings as sent.
    pub fn mark_sent(&mut self, count: usize) {
        self.sent = (self.sent + count).min(self.readings.len());
    }

    /// Removes `count` readings from the front (acknowledged, or refused by
    /// the hub for good).
    pub fn remove_front(&mut self, count: usize) {
        for _ in 0..count {
            self.readings.pop_front();
        }
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
        for (i, reading) in o.range(0, N).enumerate() {
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
        assert_eq!(o.unsent(), 0);
        assert_eq!(o.push(r(7)), Ok(false));
        assert_eq!(o.unsent(), 1);
        assert_eq!(o.range(1, 1).next().unwrap().value(), [7]);
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
