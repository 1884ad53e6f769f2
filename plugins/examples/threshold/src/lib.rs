//! Keeps the readings at or above a minimum; drops the rest.
//!
//! Parameter `min` (a number). A reading is the record's value as plain text
//! (`21.5`); a value that is not a number fails the batch, so a misrouted
//! topic is noticed instead of silently emptied.

use cairn_plugin_sdk::{Output, Params, Plugin, Record};

pub struct Threshold {
    min: f64,
}

impl Plugin for Threshold {
    fn new(params: &Params) -> Result<Self, String> {
        Ok(Threshold { min: params.parse("min")? })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), String> {
        if record.number()? >= self.min {
            out.keep(record)?;
        }
        Ok(())
    }
}

cairn_plugin_sdk::export_plugin!(Threshold);

#[cfg(test)]
mod tests {
    use cairn_plugin_sdk::testing::{batch, records};
    use cairn_plugin_sdk::{run_batch, Params, Plugin};

    use super::Threshold;

    #[test]
    fn keeps_readings_at_or_above_min_with_key_and_timestamp() {
        let mut plugin = Threshold::new(&Params::from_pairs(&[("min", "20")])).unwrap();
        let input = batch(&[(Some(b"a"), b"19.9", 10), (Some(b"b"), b"20", 11), (None, b" 31.5\n", 12)]);
        let outputs = run_batch(&mut plugin, &input).unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].0, None);
        let kept = records(&outputs[0].1);
        assert_eq!(kept.len(), 2);
        assert_eq!(
            (kept[0].key.as_deref(), kept[0].value.as_slice(), kept[0].timestamp),
            (Some(&b"b"[..]), &b"20"[..], 11)
        );
        assert_eq!((kept[1].key.as_deref(), kept[1].value.as_slice(), kept[1].timestamp), (None, &b" 31.5\n"[..], 12));
    }

    #[test]
    fn all_dropped_means_no_output() {
        let mut plugin = Threshold { min: 100.0 };
        let outputs = run_batch(&mut plugin, &batch(&[(None, b"1", 1)])).unwrap();
        assert!(outputs.is_empty());
    }

    #[test]
    fn not_a_number_fails_the_batch() {
        let mut plugin = Threshold { min: 0.0 };
        let err = run_batch(&mut plugin, &batch(&[(None, b"warm", 1)])).unwrap_err();
        assert!(err.contains("not a number"), "{err}");
    }

    #[test]
    fn min_is_required() {
        let err = Threshold::new(&Params::default()).err().unwrap();
        assert!(err.contains("min"), "{err}");
    }
}
