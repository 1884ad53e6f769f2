//! Uplink requests: list (state, backlog, counters), pause / resume, add and
//! remove, passed to the uplinks `cairn serve` started.

use cairn_proto::frame::{ErrorCode, RequestBody, ResponseBody};

use super::Handler;

impl Handler {
    pub(super) async fn uplink_request(&self, id: u32, body: RequestBody<'_>) {
        let Some(uplinks) = self.broker.uplinks() else {
            // A broker embedded without uplinks: none to list, none to change.
            return match body {
                RequestBody::ListUplinks => self.send(id, ResponseBody::Uplinks { uplinks: Vec::new() }).await,
                _ => self.send_error(id, ErrorCode::InvalidConfig, "this hub runs no uplinks").await,
            };
        };
        let done = match body {
            RequestBody::ListUplinks => return self.send(id, ResponseBody::Uplinks { uplinks: uplinks.list() }).await,
            RequestBody::PauseUplink { name, paused } => uplinks.set_paused(name, paused).map(|()| ResponseBody::Done),
            RequestBody::AddUplink { settings } => {
                uplinks.add(settings).await.map(|info| ResponseBody::Uplinks { uplinks: vec![info] })
            }
            RequestBody::RemoveUplink { name } => uplinks.remove(name).await.map(|()| ResponseBody::Done),
            _ => return self.send_error(id, ErrorCode::UnknownRequest, "not an uplink request").await,
        };
        match done {
            Ok(response) => self.send(id, response).await,
            Err(e) => self.send_error(id, ErrorCode::InvalidConfig, &e).await,
        }
    }
}
