//! Rewrites plain-text Celsius readings (`21.5`) as Fahrenheit (`70.7`).
//! Key, timestamp and headers are kept.

use std::fmt::Write;

use cairn_plugin_sdk::{Output, Params, Plugin, Record};

pub struct CelsiusToFahrenheit {
    /// Reused for every record's new value (no allocation per record).
    text: String,
}

impl Plugin for CelsiusToFahrenheit {
    fn new(_params: &Params) -> Result<Self, String> {
        Ok(CelsiusToFahrenheit { text: String::new() })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), String> {
        let fahrenheit = record.number()? * 9.0 / 5.0 + 32.0;
        self.text.clear();
        // One decimal, like the readings the sensors send.
        write!(self.text, "{fahrenheit:.1}").map_err(|e| e.to_string())?;
        out.keep_with(record, self.text.as_bytes())
    }
}

cairn_plugin_sdk::export_plugin!(CelsiusToFahrenheit);

#[cfg(test)]
mod tests {
    use cairn_plugin_sdk::testing::{batch, records};
    use cairn_plugin_sdk::{run_batch, Params, Plugin};

    use super::CelsiusToFahrenheit;

    #[test]
    fn converts_every_reading_keeping_key_and_timestamp() {
        let mut plugin = CelsiusToFahrenheit::new(&Params::default()).unwrap();
        let input = batch(&[(Some(b"room-1"), b"21.5", 5), (None, b"-40", 6), (None, b"100", 7)]);
        let outputs = run_batch(&mut plugin, &input).unwrap();
        assert_eq!(outputs.len(), 1);
        let out = records(&outputs[0].1);
        let values: Vec<&[u8]> = out.iter().map(|r| r.value.as_slice()).collect();
        assert_eq!(values, [&b"70.7"[..], b"-40.0", b"212.0"]);
        assert_eq!(out[0].key.as_deref(), Some(&b"room-1"[..]));
        assert_eq!(out.iter().map(|r| r.timestamp).collect::<Vec<_>>(), [5, 6, 7]);
    }
}
