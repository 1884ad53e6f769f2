//! Uplink requests: list (state, backlog, counters) and pause / resume,
//! passed to the uplinks `cairn serve` started.

use cairn_proto::frame::{ErrorCode, RequestBody, ResponseBody};

use super::Handler;

impl Handler {
    pub(super) async fn uplink_request(&self, id: u32, body: RequestBody<'_>) {
        let uplinks = self.broker.uplinks();
        match body {
            RequestBody::ListUplinks => {
                let uplinks = uplinks.map(|u| u.list()).unwrap_or_default();
                self.send(id, ResponseBody::Uplinks { uplinks }).await
            }
            RequestBody::PauseUplink { name, paused } => {
                let Some(uplinks) = uplinks else {
                    return self
                        .send_error(id, ErrorCode::InvalidConfig, &format!("no uplink is named '{name}'"))
                        .await;
                };
                match uplinks.set_paused(name, paused) {
                    Ok(()) => self.send(id, ResponseBody::Done).await,
                    Err(e) => self.send_error(id, ErrorCode::InvalidConfig, &e).await,
                }
            }
            RequestBody::AddUplink { settings } => {
                let Some(uplinks) = uplinks else {
                    return self.send_error(id, ErrorCode::InvalidConfig, "this hub runs no uplinks").await;
                };
                match uplinks.add(settings).await {
                    Ok(info) => self.send(id, ResponseBody::Uplinks { uplinks: vec![info] }).await,
                    Err(e) => self.send_error(id, ErrorCode::InvalidConfig, &e).await,
                }
            }
            RequestBody::RemoveUplink { name } => {
                let Some(uplinks) = uplinks else {
                    return self
                        .send_error(id, ErrorCode::InvalidConfig, &format!("no uplink is named '{name}'"))
                        .await;
                };
                match uplinks.remove(name).await {
                    Ok(()) => self.send(id, ResponseBody::Done).await,
                    Err(e) => self.send_error(id, ErrorCode::InvalidConfig, &e).await,
                }
            }
            _ => self.send_error(id, ErrorCode::UnknownRequest, "not an uplink request").await,
        }
    }
}
