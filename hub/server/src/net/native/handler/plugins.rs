//! Plugin management: uploads, attachments, dry runs, translated to
//! `plugins::Plugins` calls.

use cairn_proto::frame::{ErrorCode, RequestBody, ResponseBody};

use super::Handler;
use crate::net::native::outgoing::{encode, error_code, Outgoing};
use crate::plugins::{AttachRequest, PluginsError};
use cairn_proto::acl::{Operation, ResourceKind};

impl Handler {
    /// Plugin management: translation to `plugins::Plugins` calls.
    pub(super) async fn plugin_request(&self, id: u32, body: RequestBody<'_>) {
        let Some(plugins) = self.broker.plugins() else {
            let message = "this hub runs without WebAssembly plugins";
            return self.send_error(id, ErrorCode::InvalidConfig, message).await;
        };
        let owned = |pairs: Vec<(&str, &str)>| pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let result = match body {
            RequestBody::UploadPlugin { name, wasm } => plugins.upload(name, wasm.to_vec()).await.map(|u| {
                let body = ResponseBody::PluginUploaded {
                    name: &u.name,
                    version: u.version,
                    hash: &u.hash,
                    compile_us: u.compile_us,
                    from_cache: u.from_cache,
                };
                encode(id, body)
            }),
            RequestBody::ListPlugins => plugins.list().map(|mut plugins| {
                plugins.retain(|p| self.may(Operation::Describe, ResourceKind::Plugin, &p.name));
                encode(id, ResponseBody::Plugins { plugins })
            }),
            RequestBody::DescribePlugin { name } => {
                plugins.describe(name).map(|plugin| encode(id, ResponseBody::Plugins { plugins: vec![plugin] }))
            }
            RequestBody::Attach { attachment: a } => {
                let request = AttachRequest {
                    name: a.name.map(str::to_string),
                    topic: a.topic.to_string(),
                    plugin: a.plugin.to_string(),
                    version: a.version,
                    params: owned(a.params),
                    derived_to: a.derived_to.map(str::to_string),
                    from: a.from,
                    fuel_per_batch: a.fuel_per_batch,
                    memory_bytes: a.memory_bytes,
                    max_failures: a.max_failures,
                    // Unbounded for admins and on a hub without keys.
                    principal: self
                        .principal()
                        .ok()
                        .filter(|p| !p.admin && self.broker.auth().required())
                        .map(|p| p.name.clone()),
                };
                plugins
                    .attach(request)
                    .await
                    .map(|attachment| encode(id, ResponseBody::Attachment { attachment: Box::new(attachment) }))
            }
            RequestBody::Detach { name } => {
                // Detaching changes what the attachment's topic does.
                if let Ok(a) = plugins.attachment_info(name) {
                    if !self.may(Operation::Alter, ResourceKind::Topic, &a.topic) {
                        let message =
                            format!("may not alter topic '{}' (detach '{name}'): no ACL rule allows it", a.topic);
                        return self.send_error(id, ErrorCode::NotAuthorized, &message).await;
                    }
                }
                plugins.detach(name).await.map(|()| encode(id, ResponseBody::Done))
            }
            RequestBody::DryRun { plugin, version, params, topic, last } => {
                plugins.dry_run(plugin, version, owned(params), topic, last).await.map(|run| {
                    let outputs = run.outputs.into_iter().map(|(t, b)| (t, serde_bytes::ByteBuf::from(b))).collect();
                    encode(id, ResponseBody::DryRun { records_in: run.records_in, outputs, error: run.error })
                })
            }
            _ => return self.send_error(id, ErrorCode::UnknownRequest, "not a plugin request").await,
        };
        let out = match result {
            Ok(out) => out,
            Err(err) => {
                let code = match &err {
                    PluginsError::UnknownPlugin(_) | PluginsError::UnknownVersion { .. } => ErrorCode::UnknownPlugin,
                    PluginsError::UnknownAttachment(_) => ErrorCode::UnknownAttachment,
                    PluginsError::InvalidName { .. }
                    | PluginsError::InvalidAttachment(_)
                    | PluginsError::OverLimit(_) => ErrorCode::InvalidConfig,
                    PluginsError::Plugin(_) => ErrorCode::InvalidPlugin,
                    PluginsError::Log(e) => error_code(e),
                    PluginsError::Corrupt(_) => ErrorCode::Storage,
                };
                encode(id, ResponseBody::Error { code, message: &err.to_string() })
            }
        };
        let _ = self.responses.send(Outgoing::Frame(out)).await;
    }
}
