//! Cairn's hub: the durable partitioned log and (soon) the broker, listeners
//! and plugin runtime around it. The `cairn` binary is in `main.rs`.
//!
//! Data flows one way: `net` (listeners, later) → [`broker`] (topics,
//! partitioning) → [`log`] (redb storage, retention).

pub mod bench;
pub mod broker;
pub mod client;
pub mod config;
pub mod log;
pub mod metrics;
pub mod net;
pub mod plugins;
pub mod wasm;
