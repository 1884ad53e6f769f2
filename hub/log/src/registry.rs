//! Plugin uploads, attachments, API keys and ACL rules at rest. The log stores them in redb next
//! to the records (so a backup of the data directory holds everything) but
//! treats their metadata as opaque bytes: `plugins::registry` owns the format.

use redb::{ReadableDatabase, ReadableTable};

use super::error::{LogError, Result};
use super::tables;
use super::writer::Command;
use super::Log;

impl Log {
    /// Stores a plugin upload as the next version of `name` (1 for a new
    /// name) and returns that version. `bytes` are stored once per `hash`.
    pub async fn put_plugin_version(&self, name: &str, hash: &str, bytes: Vec<u8>, meta: Vec<u8>) -> Result<u32> {
        let (name, hash) = (name.to_string(), hash.to_string());
        self.call(|reply| Command::PutPluginVersion { name, hash, bytes, meta, reply }).await
    }

    /// Stores (`Some`) or removes (`None`) an attachment.
    pub async fn put_attachment(&self, name: &str, spec: Option<Vec<u8>>) -> Result<()> {
        let name = name.to_string();
        self.call(|reply| Command::PutAttachment { name, spec, reply }).await
    }

    /// Stores (`Some`) or removes (`None`) an uplink declared at runtime, durably.
    pub async fn put_uplink(&self, name: &str, settings: Option<Vec<u8>>) -> Result<()> {
        let name = name.to_string();
        self.call(|reply| Command::PutUplink { name, settings, reply }).await
    }

    /// Every uplink declared at runtime: (name, settings), by name.
    pub fn uplinks(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.named_rows(tables::UPLINKS)
    }

    /// Every stored plugin version: (name, version, metadata), by name then version.
    pub fn plugin_versions(&self) -> Result<Vec<(String, u32, Vec<u8>)>> {
        let txn = self.db()?.begin_read().map_err(LogError::storage)?;
        let table = txn.open_table(tables::PLUGIN_VERSIONS).map_err(LogError::storage)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(LogError::storage)? {
            let (key, meta) = row.map_err(LogError::storage)?;
            let (name, version) = key.value();
            out.push((name.to_string(), version, meta.value().to_vec()));
        }
        Ok(out)
    }

    /// The bytes uploaded with this SHA-256, if stored.
    pub fn plugin_bytes(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db()?.begin_read().map_err(LogError::storage)?;
        let table = txn.open_table(tables::PLUGIN_BLOBS).map_err(LogError::storage)?;
        let row = table.get(hash).map_err(LogError::storage)?;
        Ok(row.map(|r| r.value().to_vec()))
    }

    /// Every stored attachment: (name, spec), by name.
    pub fn attachments(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.named_rows(tables::ATTACHMENTS)
    }

    /// Every row of a name → bytes table, by name.
    fn named_rows(&self, table: redb::TableDefinition<&str, &[u8]>) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db()?.begin_read().map_err(LogError::storage)?;
        let table = txn.open_table(table).map_err(LogError::storage)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(LogError::storage)? {
            let (name, spec) = row.map_err(LogError::storage)?;
            out.push((name.value().to_string(), spec.value().to_vec()));
        }
        Ok(out)
    }

    /// Stores (`Some`) or removes (`None`) an access-control entry, durably
    /// (the call returns after the fsync).
    pub async fn put_security(&self, kind: &str, name: &str, value: Option<Vec<u8>>) -> Result<()> {
        let (kind, name) = (kind.to_string(), name.to_string());
        self.call(|reply| Command::PutSecurity { kind, name, value, reply }).await
    }

    /// Every stored access-control entry of `kind`: (name, value), by name.
    pub fn security_entries(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db()?.begin_read().map_err(LogError::storage)?;
        let table = txn.open_table(tables::SECURITY).map_err(LogError::storage)?;
        let mut out = Vec::new();
        for row in table.range((kind, "")..).map_err(LogError::storage)? {
            let (key, value) = row.map_err(LogError::storage)?;
            let (row_kind, name) = key.value();
            if row_kind != kind {
                break;
            }
            out.push((name.to_string(), value.value().to_vec()));
        }
        Ok(out)
    }
}
