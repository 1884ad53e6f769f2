//! What can go wrong with a plugin, split by what the caller does about it:
//! refuse the upload (`NotAPlugin`, `Compile`), refuse the attachment
//! (`Instantiate`, `Init`), or fail one batch (the rest: the broker will send
//! it to a dead-letter topic with this message; the next batch runs on a
//! fresh or the same instance).

use std::path::PathBuf;

/// A plugin failure, with a message a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "this hub was built without plugin support (the `wasm` feature of cairn-hub); \
         use a build with default features to upload or attach plugins"
    )]
    Unsupported,

    #[error(
        "not a Cairn plugin: {detail} (build it with the cairn-plugin-sdk for wasm32-unknown-unknown, \
         see docs/plugins.md)"
    )]
    NotAPlugin { detail: String },

    #[error("cannot compile the plugin: {detail}")]
    Compile { detail: String },

    #[error("cannot use the compiled-plugin cache directory {}: {source}", path.display())]
    CacheDir { path: PathBuf, source: std::io::Error },

    #[error("cannot instantiate the plugin: {detail}")]
    Instantiate { detail: String },

    #[error("the plugin refused its parameters: {0}")]
    Init(String),

    #[error("the plugin trapped: {reason} (the instance is discarded; the next batch gets a fresh one)")]
    Trap { reason: String },

    #[error(
        "the plugin used its whole CPU budget of {budget} fuel units on one batch (an endless loop, or \
         raise the fuel limit)"
    )]
    BudgetExhausted { budget: u64 },

    #[error(
        "the plugin ran past its time limit of {limit_ms} ms on one batch (memory-bound work the fuel \
         budget does not weigh, or an overloaded machine)"
    )]
    TimeLimit { limit_ms: u128 },

    #[error("the plugin tried to grow its memory past the limit of {limit} bytes (raise the memory limit)")]
    MemoryLimit { limit: usize },

    #[error("the plugin failed the batch: {0}")]
    Failed(String),

    #[error("output {index} of the plugin is not a valid record batch: {detail}")]
    BadOutput { index: usize, detail: String },

    #[error("the plugin's output is {actual} bytes, over the limit of {limit} bytes per batch")]
    OutputTooLarge { limit: usize, actual: usize },

    /// The plugin routed records where its attaching principal may not write.
    #[error("{0}")]
    Forbidden(String),
}
