//! Cairn's wire format, shared by the hub, its clients and the firmware SDK.
//!
//! This crate is `no_std` and allocation-free by default-off features, so a
//! microcontroller encodes exactly the bytes the hub stores:
//!
//! * [`record`]: what one event is (key, value, timestamp, headers).
//! * [`batch`]: how records travel and rest: a record batch with a fixed header
//!   (base offset, counts, timestamps, producer id + sequence, codec, CRC-32) and
//!   compactly encoded records. The hub stores a producer's batch bytes as sent,
//!   only writing the base offset, which is outside the CRC.
//! * [`partition`]: the stable key → partition hash (Kafka-compatible murmur2),
//!   so a device or client can tell which partition a key lands in.
//! * [`frame`]: the native protocol's requests and responses, and their
//!   length-prefixed CBOR framing.
//! * [`serial`]: the same messages on serial lines (COBS + CRC-32 frames).
//! * [`device`]: the requests and responses a device needs, encoded without
//!   serde (small flash), byte-identical to [`frame`]'s.
//! * [`topic`], [`fetch`], [`group`] (`alloc`): topic settings and info,
//!   fetch results, group membership and lag: the data both the hub and its
//!   clients hold, defined once.
//! * [`checksum`]: the CRC-32 of batches and serial frames.
//! * [`varint`]: the LEB128 / zig-zag integers used inside records.
//! * `mqtt` (feature `mqtt`): MQTT 3.1.1 and 5 packets as the hub's MQTT
//!   listener reads and writes them.
//!
//! Features: `alloc` adds owned records and `Vec`-backed batch building; `std`
//! (default) adds `std::error::Error` impls through `thiserror`; `mqtt` adds
//! the MQTT codec (on rumqttc's `mqttbytes`).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "alloc")]
pub mod acl;
pub mod batch;
pub mod checksum;
pub mod device;
mod error;
#[cfg(feature = "alloc")]
pub mod fetch;
pub mod frame;
#[cfg(feature = "alloc")]
pub mod group;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod partition;
pub mod record;
pub mod serial;
#[cfg(feature = "alloc")]
pub mod topic;
pub mod varint;

#[cfg(feature = "alloc")]
pub use batch::CheckedBatch;
pub use batch::{
    BatchHeader, BatchView, BatchWriter, Buffer, DecodeError, EncodeError, EncodedRecordIter, RecordContents,
    SliceBuffer,
};
pub use partition::{murmur2, partition_for_key};
pub use record::{Header, Record, RecordView};

#[cfg(feature = "alloc")]
pub use record::OwnedRecord;
