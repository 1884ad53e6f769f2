//! SDK for Cairn plugins. Plugins receive record batches as bytes in the
//! `proto` batch encoding (one call per batch, see DESIGN.md); this crate will
//! give them typed, zero-copy records. For now it re-exports the decoder that
//! plugins will use; the WIT world and the runtime come with the plugin issue.
#![no_std]

pub use cairn_proto::{BatchView, RecordView};
