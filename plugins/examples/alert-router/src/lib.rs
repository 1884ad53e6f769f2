//! Keeps every reading, and also emits the ones over a limit to the topic
//! `alerts` (same key and value), so alerts can be consumed on their own.
//!
//! Parameter `limit` (a number).

use cairn_plugin_sdk::{Output, Params, Plugin, Record};

/// The topic alerts are emitted to.
pub const ALERTS: &str = "alerts";

pub struct AlertRouter {
    limit: f64,
}

impl Plugin for AlertRouter {
    fn new(params: &Params) -> Result<Self, String> {
        Ok(AlertRouter { limit: params.parse("limit")? })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), String> {
        out.keep(record)?;
        if record.number()? > self.limit {
            out.emit(ALERTS, record.key(), record.value())?;
        }
        Ok(())
    }
}

cairn_plugin_sdk::export_plugin!(AlertRouter);

#[cfg(test)]
mod tests {
    use cairn_plugin_sdk::testing::{batch, records};
    use cairn_plugin_sdk::{run_batch, Params, Plugin};

    use super::AlertRouter;

    #[test]
    fn keeps_all_and_routes_readings_over_the_limit() {
        let mut plugin = AlertRouter::new(&Params::from_pairs(&[("limit", "30")])).unwrap();
        let input = batch(&[(Some(b"r1"), b"29", 1), (Some(b"r2"), b"30.5", 2), (Some(b"r3"), b"30", 3)]);
        let outputs = run_batch(&mut plugin, &input).unwrap();
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[0].0, None);
        assert_eq!(records(&outputs[0].1).len(), 3);
        assert_eq!(outputs[1].0.as_deref(), Some("alerts"));
        let alerts = records(&outputs[1].1);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].key.as_deref(), Some(&b"r2"[..]));
        assert_eq!(alerts[0].value, b"30.5");
        assert_eq!(alerts[0].timestamp, 2);
    }
}
