//! What can go wrong managing plugins and attachments, with what to do.

use crate::wasm::PluginError;
use cairn_log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum PluginsError {
    #[error("no plugin named '{0}' (upload it first: cairn plugin upload <file.wasm> --name {0})")]
    UnknownPlugin(String),

    #[error("plugin '{name}' has no version {version} (its latest is {latest})")]
    UnknownVersion { name: String, version: u32, latest: u32 },

    #[error("no attachment named '{0}' (see cairn plugin list)")]
    UnknownAttachment(String),

    #[error("invalid {what} '{name}': {reason}")]
    InvalidName { what: &'static str, name: String, reason: &'static str },

    #[error("invalid attachment: {0}")]
    InvalidAttachment(String),

    /// Over a ceiling the operator set in `[plugins]`.
    #[error("{0}")]
    OverLimit(String),

    /// The upload is not a plugin, or it refused its parameters.
    #[error(transparent)]
    Plugin(#[from] PluginError),

    #[error(transparent)]
    Log(#[from] LogError),

    #[error("stored plugin data is unreadable: {0}")]
    Corrupt(String),
}

pub type Result<T, E = PluginsError> = std::result::Result<T, E>;

/// Plugin and attachment names: what topic names allow, shorter.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let invalid = |reason| Err(PluginsError::InvalidName { what, name: name.to_string(), reason });
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > 128 {
        return invalid("it is longer than 128 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}
