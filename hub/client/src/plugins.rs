//! Plugins: upload, list, describe, attach, detach, dry run.

use cairn_proto::frame::{AttachSpec, AttachmentInfo, PluginInfo, RequestBody, ResponseBody};

use crate::connection::PLUGIN_COMPILE_WAIT;
use crate::{Client, ClientError, DryRunResult, PluginUploaded, Result};

impl Client {
    /// Uploads a plugin (.wasm) as the next version of `name`.
    pub async fn upload_plugin(&self, name: &str, wasm: &[u8]) -> Result<PluginUploaded> {
        // The hub compiles the module before it answers: allow for a large
        // one on a slow gateway.
        self.request_waiting(RequestBody::UploadPlugin { name, wasm }, PLUGIN_COMPILE_WAIT, |r| match r {
            ResponseBody::PluginUploaded { name, version, hash, compile_us, from_cache } => {
                Some(PluginUploaded { name: name.to_string(), version, hash: hash.to_string(), compile_us, from_cache })
            }
            _ => None,
        })
        .await
    }

    /// Every plugin with its versions and attachments.
    pub async fn list_plugins(&self) -> Result<Vec<PluginInfo>> {
        self.request(RequestBody::ListPlugins, plugins_of).await
    }

    /// One plugin, its versions, attachments and their counters.
    pub async fn describe_plugin(&self, name: &str) -> Result<PluginInfo> {
        let mut list = self.request(RequestBody::DescribePlugin { name }, plugins_of).await?;
        list.pop().ok_or_else(|| ClientError::Protocol("empty plugin description".into()))
    }

    /// Attaches a plugin (or swaps the version of an existing attachment).
    pub async fn attach(&self, attachment: AttachSpec<'_>) -> Result<AttachmentInfo> {
        self.request(RequestBody::Attach { attachment }, |r| match r {
            ResponseBody::Attachment { attachment } => Some(*attachment),
            _ => None,
        })
        .await
    }

    /// Removes an attachment.
    pub async fn detach(&self, name: &str) -> Result<()> {
        self.request(RequestBody::Detach { name }, |r| matches!(r, ResponseBody::Done).then_some(())).await
    }

    /// What a plugin would do to the last `last` records of each partition
    /// of `topic`: (records in, output batches, error).
    pub async fn dry_run(
        &self,
        plugin: &str,
        version: Option<u32>,
        params: &[(&str, &str)],
        topic: &str,
        last: u32,
    ) -> Result<DryRunResult> {
        let body = RequestBody::DryRun { plugin, version, params: params.to_vec(), topic, last };
        self.request(body, |r| match r {
            ResponseBody::DryRun { records_in, outputs, error } => Some(DryRunResult {
                records_in,
                outputs: outputs.into_iter().map(|(t, b)| (t, b.into_vec())).collect(),
                error,
            }),
            _ => None,
        })
        .await
    }
}

fn plugins_of(r: ResponseBody<'_>) -> Option<Vec<PluginInfo>> {
    match r {
        ResponseBody::Plugins { plugins } => Some(plugins),
        _ => None,
    }
}
