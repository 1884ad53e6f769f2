//! Rewrites CBOR payloads (what small devices send) as JSON (what dashboards
//! read). CBOR byte strings become arrays of numbers; a map key that JSON
//! cannot express fails the batch with the reason.

use cairn_plugin_sdk::{Output, Params, Plugin, Record};

pub struct CborToJson {
    /// Reused for every record's JSON text.
    json: Vec<u8>,
}

impl Plugin for CborToJson {
    fn new(_params: &Params) -> Result<Self, String> {
        Ok(CborToJson { json: Vec::new() })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), String> {
        let value: serde_cbor::Value = record.cbor()?;
        self.json.clear();
        serde_json::to_writer(&mut self.json, &value).map_err(|e| format!("cannot write the value as JSON: {e}"))?;
        out.keep_with(record, &self.json)
    }
}

cairn_plugin_sdk::export_plugin!(CborToJson);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_plugin_sdk::testing::{batch, records};
    use cairn_plugin_sdk::{run_batch, Params, Plugin};

    use super::CborToJson;

    #[test]
    fn rewrites_cbor_maps_as_json() {
        let mut reading = BTreeMap::new();
        reading.insert("room", serde_cbor::Value::Text("kitchen".into()));
        reading.insert("temp", serde_cbor::Value::Float(21.5));
        let cbor = serde_cbor::to_vec(&reading).unwrap();
        let mut plugin = CborToJson::new(&Params::default()).unwrap();
        let outputs = run_batch(&mut plugin, &batch(&[(Some(b"k"), &cbor, 9)])).unwrap();
        let out = records(&outputs[0].1);
        assert_eq!(std::str::from_utf8(&out[0].value).unwrap(), r#"{"room":"kitchen","temp":21.5}"#);
        assert_eq!((out[0].key.as_deref(), out[0].timestamp), (Some(&b"k"[..]), 9));
    }

    #[test]
    fn not_cbor_fails_the_batch() {
        let mut plugin = CborToJson::new(&Params::default()).unwrap();
        // 0xff is a CBOR "break" with nothing to end.
        let err = run_batch(&mut plugin, &batch(&[(None, &[0xff], 1)])).unwrap_err();
        assert!(err.contains("CBOR"), "{err}");
    }
}
