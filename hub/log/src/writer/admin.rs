//! The writer's own transactions between group commits: topics created,
//! altered and deleted, plugin versions and attachments, counters, and
//! retention.

use super::*;

impl Writer {
    pub(super) fn admin(&mut self, cmd: Command) {
        match cmd {
            Command::CreateTopic { name, config, reply } => {
                let _ = reply.send(self.create_topic(name, config));
            }
            Command::DeleteTopic { name, reply } => {
                let _ = reply.send(self.delete_topic(&name));
            }
            Command::DeleteGroup { group, reply } => {
                let _ = reply.send(self.delete_group(&group));
            }
            Command::AlterTopic { name, config, reply } => {
                let _ = reply.send(self.alter_topic(name, config));
            }
            Command::AllocateProducerId { reply } => {
                let _ = reply.send(self.next_counter("next_producer_id").map(|id| id as i64));
            }
            Command::PutPluginVersion { name, hash, bytes, meta, reply } => {
                let _ = reply.send(self.put_plugin_version(&name, &hash, &bytes, &meta));
            }
            Command::PutAttachment { name, spec, reply } => {
                let _ = reply.send(self.put_named(tables::ATTACHMENTS, &name, spec.as_deref()));
            }
            Command::PutUplink { name, settings, reply } => {
                let _ = reply.send(self.put_named(tables::UPLINKS, &name, settings.as_deref()));
            }
            Command::PutSecurity { kind, name, value, reply } => {
                let _ = reply.send(self.put_security(&kind, &name, value.as_deref()));
            }
            Command::Retention { reply } => {
                let result = self.retention();
                if let Err(err) = &result {
                    tracing::error!(error = %err, "retention failed");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Command::Flush => self.flush(),
            Command::Append(_)
            | Command::CommitOffsets { .. }
            | Command::Transaction { .. }
            | Command::Shutdown { .. } => {
                unreachable!("handled in process")
            }
        }
    }

    pub(super) fn put_plugin_version(&mut self, name: &str, hash: &str, bytes: &[u8], meta: &[u8]) -> Result<u32> {
        let txn = self.begin(true)?;
        let version = {
            let mut blobs = txn.open_table(tables::PLUGIN_BLOBS).map_err(LogError::storage)?;
            if blobs.get(hash).map_err(LogError::storage)?.is_none() {
                blobs.insert(hash, bytes).map_err(LogError::storage)?;
            }
            let mut versions = txn.open_table(tables::PLUGIN_VERSIONS).map_err(LogError::storage)?;
            let last = versions
                .range((name, 0)..=(name, u32::MAX))
                .map_err(LogError::storage)?
                .next_back()
                .transpose()
                .map_err(LogError::storage)?
                .map_or(0, |(key, _)| key.value().1);
            let version = last + 1;
            versions.insert((name, version), meta).map_err(LogError::storage)?;
            version
        };
        self.commit(txn, true)?;
        self.unflushed_since = None;
        Ok(version)
    }

    /// Stores (`Some`) or removes (`None`) a row of a name → bytes table,
    /// durably.
    pub(super) fn put_named(
        &mut self,
        table: redb::TableDefinition<&str, &[u8]>,
        name: &str,
        value: Option<&[u8]>,
    ) -> Result<()> {
        let txn = self.begin(true)?;
        {
            let mut table = txn.open_table(table).map_err(LogError::storage)?;
            match value {
                Some(spec) => table.insert(name, spec).map(drop),
                None => table.remove(name).map(drop),
            }
            .map_err(LogError::storage)?;
        }
        self.commit(txn, true)?;
        self.unflushed_since = None;
        Ok(())
    }

    pub(super) fn put_security(&mut self, kind: &str, name: &str, value: Option<&[u8]>) -> Result<()> {
        let txn = self.begin(true)?;
        {
            let mut table = txn.open_table(tables::SECURITY).map_err(LogError::storage)?;
            match value {
                Some(value) => table.insert((kind, name), value).map(drop),
                None => table.remove((kind, name)).map(drop),
            }
            .map_err(LogError::storage)?;
        }
        self.commit(txn, true)?;
        self.unflushed_since = None;
        Ok(())
    }

    /// Reads and increments a persistent counter in a durable transaction.
    pub(super) fn next_counter(&mut self, name: &str) -> Result<u64> {
        let txn = self.begin(true)?;
        let value = {
            let mut counters = txn.open_table(tables::COUNTERS).map_err(LogError::storage)?;
            let value = counters.get(name).map_err(LogError::storage)?.map(|g| g.value()).unwrap_or(0);
            counters.insert(name, value + 1).map_err(LogError::storage)?;
            value
        };
        self.commit(txn, true)?;
        self.unflushed_since = None;
        Ok(value)
    }

    pub(super) fn create_topic(&mut self, name: String, config: TopicConfig) -> Result<()> {
        if self.ids.contains_key(&name) {
            return Err(LogError::TopicExists(name));
        }
        let txn = self.begin(true)?;
        let meta = {
            let mut counters = txn.open_table(tables::COUNTERS).map_err(LogError::storage)?;
            let id = counters.get("next_topic_id").map_err(LogError::storage)?.map(|g| g.value()).unwrap_or(0);
            counters.insert("next_topic_id", id + 1).map_err(LogError::storage)?;
            let id = u32::try_from(id).map_err(|_| LogError::InvalidConfig("topic ids exhausted".into()))?;
            let meta = TopicMeta { id, config };
            let mut topics = txn.open_table(tables::TOPICS).map_err(LogError::storage)?;
            topics.insert(name.as_str(), meta.to_bytes().as_slice()).map_err(LogError::storage)?;
            let mut partitions = txn.open_table(tables::PARTITIONS).map_err(LogError::storage)?;
            for p in 0..meta.config.partitions {
                partitions.insert((id, p), PartState::EMPTY.row()).map_err(LogError::storage)?;
            }
            meta
        };
        self.commit(txn, true)?;
        self.unflushed_since = None;
        tracing::info!(topic = %name, partitions = meta.config.partitions, "topic created");
        let parts = vec![PartState::EMPTY; meta.config.partitions as usize];
        self.install_topic(name, meta, parts, None);
        Ok(())
    }

    pub(super) fn delete_topic(&mut self, name: &str) -> Result<()> {
        let id = *self.ids.get(name).ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let txn = self.begin(true)?;
        {
            let mut topics = txn.open_table(tables::TOPICS).map_err(LogError::storage)?;
            topics.remove(name).map_err(LogError::storage)?;
            let mut t = DataTables::open(&txn)?;
            t.batches.retain_in((id, 0, 0)..=(id, u32::MAX, u64::MAX), |_, _| false).map_err(LogError::storage)?;
            t.partitions.retain_in((id, 0)..=(id, u32::MAX), |_, _| false).map_err(LogError::storage)?;
            t.time_index
                .retain_in((id, 0, i64::MIN)..=(id, u32::MAX, i64::MAX), |_, _| false)
                .map_err(LogError::storage)?;
            t.producers.retain(|k, _| k.1 != id).map_err(LogError::storage)?;
            t.group_offsets.retain(|k, _| k.1 != id).map_err(LogError::storage)?;
        }
        self.commit(txn, true)?;
        self.unflushed_since = None;
        self.topics.remove(&id);
        self.ids.remove(name);
        self.catalog.remove(name);
        self.compacted_at.retain(|k, _| k.0 != id);
        tracing::info!(topic = %name, "topic deleted");
        Ok(())
    }

    pub(super) fn delete_group(&mut self, group: &str) -> Result<()> {
        let txn = self.begin(true)?;
        {
            let mut offsets = txn.open_table(tables::GROUP_OFFSETS).map_err(LogError::storage)?;
            offsets.retain_in((group, 0, 0)..=(group, u32::MAX, u32::MAX), |_, _| false).map_err(LogError::storage)?;
        }
        self.commit(txn, true)?;
        self.unflushed_since = None;
        Ok(())
    }

    pub(super) fn alter_topic(&mut self, name: String, config: TopicConfig) -> Result<()> {
        let id = *self.ids.get(&name).ok_or_else(|| LogError::UnknownTopic(name.clone()))?;
        let topic = &self.topics[&id];
        let current = topic.meta.config.partitions;
        if config.partitions < current {
            return Err(LogError::PartitionsCannotShrink { topic: name, current, requested: config.partitions });
        }
        let meta = TopicMeta { id, config };
        let txn = self.begin(true)?;
        {
            let mut topics = txn.open_table(tables::TOPICS).map_err(LogError::storage)?;
            topics.insert(name.as_str(), meta.to_bytes().as_slice()).map_err(LogError::storage)?;
            let mut partitions = txn.open_table(tables::PARTITIONS).map_err(LogError::storage)?;
            for p in current..meta.config.partitions {
                partitions.insert((id, p), PartState::EMPTY.row()).map_err(LogError::storage)?;
            }
        }
        self.commit(txn, true)?;
        self.unflushed_since = None;
        let old = self.topics.remove(&id).expect("topic present");
        let mut parts = old.parts;
        parts.resize(meta.config.partitions as usize, PartState::EMPTY);
        tracing::info!(topic = %name, partitions = meta.config.partitions, "topic altered");
        self.install_topic(name, meta, parts, Some(&old.entry));
        Ok(())
    }

    pub(super) fn retention(&mut self) -> Result<RetentionReport> {
        let now = self.options.clock.now_ms();
        let txn = self.begin(true)?;
        let held = self.retention_holds(&txn)?;
        let (report, changes, compacted) =
            retention::enforce(&txn, &self.topics, &self.compacted_at, &held, now, &self.jumps)?;
        crate::jumps::save_wall_clock(&txn, now)?;
        self.commit(txn, true)?;
        self.unflushed_since = None;
        for (key, state) in changes {
            self.set_part_state(key, state);
        }
        self.compacted_at.extend(compacted);
        self.catalog.stats.record_retention(&report);
        if report.batches_deleted > 0 || report.records_compacted > 0 || report.partitions_held > 0 {
            tracing::info!(?report, "retention");
        }
        Ok(report)
    }

    /// The offsets the holding groups keep, unless the log stores more than
    /// `retention_hold_max_bytes` (then none, with a warning).
    fn retention_holds(&self, txn: &redb::WriteTransaction) -> Result<HashMap<PartitionKey, u64>> {
        let groups = self.options.retention_holds.groups();
        if groups.is_empty() {
            return Ok(HashMap::new());
        }
        let stored: u64 = self.topics.values().flat_map(|t| t.parts.iter()).map(|p| p.bytes).sum();
        if stored > self.options.retention_hold_max_bytes {
            tracing::warn!(
                stored,
                max = self.options.retention_hold_max_bytes,
                ?groups,
                "the log is over retention_hold_max_bytes: retention deletes records the holding groups have not read"
            );
            return Ok(HashMap::new());
        }
        crate::holds::held_offsets(txn, &groups)
    }
}
