//! Cairn's device SDK: `no_std`, no allocator, no panics on the publish path.
//! It publishes whatever bytes a device produces; sensors are read by their
//! own driver crates beside it (e.g. `cairn-tmp102` in `firmware/tmp102`, an
//! `embedded-hal` 1.0 driver for TI's TMP102 I²C temperature sensor).
//!
//! * [`publisher`]: readings → the hub, numbered (producer id + sequence) so
//!   retries are never stored twice, kept in a bounded [`outbox`] until
//!   acknowledged, over any `embedded-io` link; with the device's API key
//!   ([`Credentials`]) on a hub that requires keys.
//! * [`link`]: the native protocol's messages framed for TCP (length prefix)
//!   or serial lines (COBS + CRC).
#![no_std]

pub mod link;
pub mod outbox;
pub mod publisher;

pub use link::{Framing, LinkError};
pub use outbox::{FullPolicy, MAX_VALUE};
pub use publisher::{Config, ConfigError, Counters, Credentials, PublishError, Publisher};
