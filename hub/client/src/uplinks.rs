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

    /// Pauses (`true`) or resumes uplink `name`.
    pub async fn pause_uplink(&self, name: &str, paused: bool) -> Result<()> {
        self.request(RequestBody::PauseUplink { name, paused }, |r| matches!(r, ResponseBody::Done).then_some(())).await
    }
}
