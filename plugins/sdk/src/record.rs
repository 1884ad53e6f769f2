//! One record as a plugin sees it: slices into the batch bytes, nothing copied.

use cairn_proto::record::HeaderIter;
use cairn_proto::{RecordContents, RecordView};

/// A record of the input batch. Borrowed from the batch bytes (zero-copy).
#[derive(Debug, Clone)]
pub struct Record<'a> {
    view: RecordView<'a>,
    /// Its key, value and headers as encoded: what [`crate::Output::keep`]
    /// copies.
    contents: RecordContents<'a>,
}

impl<'a> Record<'a> {
    pub(crate) fn new(view: RecordView<'a>, contents: RecordContents<'a>) -> Self {
        Record { view, contents }
    }

    pub(crate) fn contents(&self) -> RecordContents<'a> {
        self.contents
    }

    /// The record's key, if it has one (MQTT: the MQTT topic).
    pub fn key(&self) -> Option<&'a [u8]> {
        self.view.key
    }

    /// The key as UTF-8 text, if it has one and it is text.
    pub fn key_str(&self) -> Option<&'a str> {
        self.view.key.and_then(|k| core::str::from_utf8(k).ok())
    }

    /// The payload.
    pub fn value(&self) -> &'a [u8] {
        self.view.value
    }

    /// Milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.view.timestamp
    }

    /// The record's offset in its partition (the batch's base offset plus the
    /// record's delta). On ingest, before the write, offsets are not assigned
    /// yet and count from 0 within the batch.
    pub fn offset(&self) -> u64 {
        self.view.offset
    }

    /// The headers, as (name, value) pairs.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + Clone + 'a {
        self.header_iter().map(|h| (h.name, h.value))
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.header_iter().find(|h| h.name == name).map(|h| h.value)
    }

    pub(crate) fn header_iter(&self) -> HeaderIter<'a> {
        self.view.headers.clone()
    }

    /// The value as UTF-8 text.
    pub fn text(&self) -> Result<&'a str, String> {
        core::str::from_utf8(self.view.value).map_err(|e| format!("value is not UTF-8 text: {e}"))
    }

    /// The value as a plain-text number (`21.5`, ` -3 `, `1e3`), the way
    /// sensors and `mosquitto_pub -m 21.5` send readings.
    pub fn number(&self) -> Result<f64, String> {
        if let Some(number) = plain_number(self.view.value) {
            return Ok(number);
        }
        // Unicode spaces, `inf`, `NaN`, or not a number at all.
        let text = self.text()?.trim();
        text.parse::<f64>().map_err(|_| format!("value {text:?} is not a number"))
    }

    /// The value decoded as JSON into `T` (borrowing strings where `T` does).
    pub fn json<T: serde::Deserialize<'a>>(&self) -> Result<T, String> {
        serde_json::from_slice(self.view.value).map_err(|e| format!("value is not the expected JSON: {e}"))
    }

    /// The value decoded as CBOR into `T`.
    pub fn cbor<T: serde::Deserialize<'a>>(&self) -> Result<T, String> {
        serde_cbor::from_slice(self.view.value).map_err(|e| format!("value is not the expected CBOR: {e}"))
    }
}

/// The common case of [`Record::number`] without decoding characters: ASCII
/// digits (and `+-.eE`) between ASCII whitespace, the trailing run checked
/// eight bytes at a time. A filter calls this once per record, so it shows.
fn plain_number(value: &[u8]) -> Option<f64> {
    let start = value.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &value[start..];
    let len = rest.iter().position(|b| !matches!(b, b'0'..=b'9' | b'+' | b'-' | b'.' | b'e' | b'E'));
    let (digits, tail) = rest.split_at(len.unwrap_or(rest.len()));
    if !all_ascii_whitespace(tail) {
        return None;
    }
    if let Some(number) = short_decimal(digits) {
        return Some(number);
    }
    core::str::from_utf8(digits).ok()?.parse().ok()
}

/// `21.5`, `-3`, `0.125`: a sign, at most 15 digits and a point, no exponent.
/// The digits as an integer and the power of ten are both exact in an `f64`
/// (below 2^53, at most 10^15), so one division is correctly rounded: the
/// same result as `str::parse` (Clinger's fast path), at a fraction of the
/// cost. Anything else is left to `str::parse`.
fn short_decimal(digits: &[u8]) -> Option<f64> {
    const POWERS_OF_TEN: [f64; 16] =
        [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (negative, body) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, digits),
    };
    let mut mantissa: u64 = 0;
    let mut count = 0usize;
    let mut fraction_digits: Option<usize> = None;
    for &byte in body {
        match byte {
            b'0'..=b'9' if count < 15 => {
                mantissa = mantissa * 10 + u64::from(byte - b'0');
                count += 1;
                if let Some(f) = fraction_digits.as_mut() {
                    *f += 1;
                }
            }
            b'.' if fraction_digits.is_none() => fraction_digits = Some(0),
            _ => return None,
        }
    }
    if count == 0 {
        return None;
    }
    let scale = POWERS_OF_TEN.get(fraction_digits.unwrap_or(0))?;
    let magnitude = mantissa as f64 / scale;
    Some(if negative { -magnitude } else { magnitude })
}

fn all_ascii_whitespace(bytes: &[u8]) -> bool {
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let words_ok = chunks.by_ref().all(|c| {
        let word = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        word == SPACES || c.iter().all(u8::is_ascii_whitespace)
    });
    words_ok && chunks.remainder().iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::plain_number;

    proptest! {
        /// The fast path agrees with `str::parse` bit for bit, wherever it
        /// answers, and `plain_number` always does.
        #[test]
        fn short_decimals_parse_like_str_parse(
            sign in "[-+]?", int in "[0-9]{0,16}", point in "\\.?", frac in "[0-9]{0,16}", pad in " {0,3}"
        ) {
            let text = format!("{pad}{sign}{int}{point}{frac}{pad}");
            let expected = text.trim().parse::<f64>().ok();
            let got = plain_number(text.as_bytes());
            prop_assert_eq!(got.map(f64::to_bits), expected.map(f64::to_bits), "{:?}", text);
        }
    }

    #[test]
    fn plain_numbers_parse_like_str_parse() {
        let padded = format!("21.5{}", " ".repeat(96));
        for (text, expected) in [
            ("21.5", Some(21.5)),
            (" -3 ", Some(-3.0)),
            ("1e3\n", Some(1000.0)),
            (padded.as_str(), Some(21.5)),
            ("\t7\r\n", Some(7.0)),
            ("21.5 x", None),
            ("", None),
            ("   ", None),
            ("1-2", None),
            ("inf", None),
        ] {
            assert_eq!(plain_number(text.as_bytes()), expected, "{text:?}");
        }
    }
}
