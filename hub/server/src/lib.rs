//! Cairn's hub library: everything `cairn serve` runs around the log.
//!
//! Data flows one way: [`net`] (listeners: native protocol, MQTT, serial
//! lines) → [`broker`] (topics, partitioning, consumer groups) → the log
//! (`cairn-log`: redb storage, group commit, retention), with [`plugins`]
//! (ingest chains and derived topics, run by the [`wasm`] runtime) hooked
//! between broker and log. [`metrics`] counts traffic on the way.
//!
//! Feature `wasm` (default) compiles the WebAssembly plugin runtime
//! (wasmtime). Without it, plugins can still be listed but not uploaded,
//! attached or run: those requests get an error saying this hub was built
//! without plugin support.

pub mod auth;
pub mod broker;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod plugins;
pub mod topic_filter;
pub mod wasm;
