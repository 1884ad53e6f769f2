//! Uplinks: list them with their state and backlog; pause and resume.

use cairn_proto::frame::{RequestBody, ResponseBody, UplinkInfo};

use crate::{Client, Result};

impl Client {
    /// Every uplink of the hub, in its config order.
    pub async fn list_uplinks(&self) -> Result<Vec<UplinkInfo>> {
        self.request(RequestBody::ListUplinks, |r| match r {
            ResponseBody::Uplinks { uplinks } => Some(uplinks),
            _ => None,
        })
        .await
    }

    /// Declares an uplink from TOML settings (the keys of an `[[uplink]]`
    /// table); the hub stores and starts it.
    pub async fn add_uplink(&self, settings: &str) -> Result<UplinkInfo> {
        self.request(RequestBody::AddUplink { settings }, |r| match r {
            ResponseBody::Uplinks { uplinks } => uplinks.into_iter().next(),
            _ => None,
        })
        .await
    }

    /// Stops and forgets an uplink declared with [`Client::add_uplink`].
    pub async fn remove_uplink(&self, name: &str) -> Result<()> {
        self.request(RequestBody::RemoveUplink { name }, |r| matches!(r, ResponseBody::Done).then_some(())).await
    }

    /// Pauses (`true`) or resumes uplink `name`.
    pub async fn pause_uplink(&self, name: &str, paused: bool) -> Result<()> {
        self.request(RequestBody::PauseUplink { name, paused }, |r| matches!(r, ResponseBody::Done).then_some(())).await
    }
}
