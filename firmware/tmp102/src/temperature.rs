//! The temperature register's contents (SBOS397, temperature register and
//! its 12/13-bit data formats): [`Temperature`], and how the normal and
//! extended formats encode it.

/// A temperature as the TMP102 counts it: a signed number of 1/16 °C steps.
///
/// Keeping the raw count (instead of a float) makes the type exact, `Eq` and
/// cheap on FPU-less MCUs; the range is that of the widest (13-bit) format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Temperature(i16);

impl Temperature {
    /// Lowest value the 13-bit format can hold: −256 °C.
    pub const MIN: Temperature = Temperature(-4096);
    /// Highest value the 13-bit format can hold: 255.9375 °C.
    pub const MAX: Temperature = Temperature(4095);

    /// From a count of 1/16 °C; `None` outside [`Self::MIN`]..=[`Self::MAX`].
    pub const fn from_raw(raw: i16) -> Option<Temperature> {
        if raw < Self::MIN.0 || raw > Self::MAX.0 {
            None
        } else {
            Some(Temperature(raw))
        }
    }

    /// From millidegrees Celsius, rounded to the nearest 1/16 °C step (an
    /// exact half step cannot occur). `None` outside the 13-bit range.
    ///
    /// Rounding to nearest (rather than toward zero) makes
    /// `from_milli_celsius(t.milli_celsius()) == Some(t)` for every `t`.
    pub const fn from_milli_celsius(milli_celsius: i32) -> Option<Temperature> {
        // counts = m * 16 / 1000 = 2m / 125; i64 so 2m cannot overflow.
        let twice = milli_celsius as i64 * 2;
        let counts = if twice >= 0 { (twice + 62) / 125 } else { (twice - 62) / 125 };
        if counts < Self::MIN.0 as i64 || counts > Self::MAX.0 as i64 {
            None
        } else {
            Some(Temperature(counts as i16))
        }
    }

    /// The raw count of 1/16 °C.
    pub const fn raw(self) -> i16 {
        self.0
    }

    /// Millidegrees Celsius: `raw * 1000 / 16`, computed as `raw * 125 / 2`.
    ///
    /// Odd counts are an exact half millidegree (e.g. 0.0625 °C = 62.5 m°C);
    /// integer division rounds those toward zero, so 62.5 → 62 and
    /// −62.5 → −62. Never off by more than 0.5 m°C.
    pub const fn milli_celsius(self) -> i32 {
        self.0 as i32 * 125 / 2
    }

    /// Degrees Celsius. Exact: every count is a multiple of 2⁻⁴.
    pub fn celsius(self) -> f32 {
        f32::from(self.0) / 16.0
    }
}

/// Which layout the temperature and limit registers use (EM bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// 12-bit, left-justified: the count sits in bits 15:4.
    Normal,
    /// 13-bit, left-justified: the count sits in bits 15:3.
    Extended,
}

impl Format {
    pub(crate) const fn shift(self) -> u32 {
        match self {
            Format::Normal => 4,
            Format::Extended => 3,
        }
    }

    const fn contains(self, t: Temperature) -> bool {
        match self {
            Format::Normal => t.0 >= -2048 && t.0 <= 2047,
            Format::Extended => t.0 >= Temperature::MIN.0 && t.0 <= Temperature::MAX.0,
        }
    }

    /// Limit-register bytes for `t`; bits below the count are zero.
    pub(crate) const fn encode(self, t: Temperature) -> Option<[u8; 2]> {
        if self.contains(t) {
            // In range, so the shifted value still fits in an i16.
            Some((t.0 << self.shift()).to_be_bytes())
        } else {
            None
        }
    }
}

/// Decodes the temperature register.
///
/// The format comes from bit 0 of the second byte, which the TMP102 sets in
/// extended mode (SBOS397, extended-mode temperature register), not from the
/// configuration's EM bit: the register keeps its old format until the first
/// conversion after EM changes, and using the flag saves a bus read too.
pub(crate) const fn decode_temperature(bytes: [u8; 2]) -> Temperature {
    let format = if bytes[1] & 0x01 != 0 { Format::Extended } else { Format::Normal };
    // Arithmetic shift keeps the sign; the flag bit is shifted out.
    Temperature(i16::from_be_bytes(bytes) >> format.shift())
}
