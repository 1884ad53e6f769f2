//! Driver for the Texas Instruments TMP102 digital temperature sensor.
//!
//! The TMP102 is a ±0.5 °C I²C/SMBus sensor with a 12-bit (0.0625 °C per LSB)
//! temperature register, an optional 13-bit "extended mode" that reaches
//! 150 °C, a shutdown / one-shot mode and a programmable alert window. This
//! driver is `no_std`, does not allocate, never panics and is generic over any
//! [`embedded_hal::i2c::I2c`] bus.
//!
//! Everything here follows TI SBOS397, "TMP102 Low-Power Digital Temperature
//! Sensor With SMBus and Two-Wire Serial Interface in SOT563", register map
//! section: the pointer register, the temperature register and its 12/13-bit
//! data formats, the configuration register and the T_LOW / T_HIGH limit
//! registers.
//!
//! Every register is 16 bits wide and transferred MSB first: a read writes the
//! pointer byte and then reads two bytes (one repeated-start transaction), a
//! write sends the pointer followed by the two data bytes.
//!
//! The driver keeps no copy of the configuration register: each
//! read-modify-write reads it from the device first, so it cannot go stale if
//! something else (or a power cycle) changes the sensor's state.
//!
//! # Usage
//!
//! The driver takes the bus by value (a shared bus works too, through
//! `embedded-hal-bus`) and gives it back with [`Tmp102::destroy`]:
//!
//! ```
//! # use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction};
//! use cairn_tmp102::{Address, ConversionRate, Tmp102};
//!
//! # let i2c = I2cMock::new(&[
//! #     Transaction::write_read(0x48, vec![0x01], vec![0x60, 0xA0]),
//! #     Transaction::write(0x48, vec![0x01, 0x60, 0x60]),
//! #     Transaction::write_read(0x48, vec![0x00], vec![0x19, 0x00]),
//! # ]);
//! let mut sensor = Tmp102::new(i2c, Address::Gnd);
//! sensor.set_conversion_rate(ConversionRate::Hz1)?;
//! let temperature = sensor.read_temperature()?;
//! assert_eq!(temperature.milli_celsius(), 25_000);
//! let i2c = sensor.destroy();
//! # let mut i2c = i2c;
//! # i2c.done();
//! # Ok::<(), cairn_tmp102::Error<embedded_hal::i2c::ErrorKind>>(())
//! ```
#![no_std]
#![deny(unsafe_code, missing_docs)]

use core::fmt;

use embedded_hal::i2c::I2c;

/// 7-bit I²C address, chosen by what the ADD0 pin is tied to (SBOS397 address
/// pin table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Address {
    /// ADD0 to GND: 0x48.
    #[default]
    Gnd = 0x48,
    /// ADD0 to V+: 0x49.
    Vplus = 0x49,
    /// ADD0 to SDA: 0x4A.
    Sda = 0x4A,
    /// ADD0 to SCL: 0x4B.
    Scl = 0x4B,
}

impl Address {
    /// The 7-bit bus address.
    pub const fn bits(self) -> u8 {
        self as u8
    }
}

impl From<Address> for u8 {
    fn from(address: Address) -> u8 {
        address.bits()
    }
}

/// Pointer register values (SBOS397, pointer register): P1:P0 select the
/// register the next read or write addresses.
mod pointer {
    /// Temperature register (read-only).
    pub const TEMPERATURE: u8 = 0x00;
    /// Configuration register.
    pub const CONFIG: u8 = 0x01;
    /// T_LOW limit register.
    pub const T_LOW: u8 = 0x02;
    /// T_HIGH limit register.
    pub const T_HIGH: u8 = 0x03;
}

/// Errors returned by the driver.
///
/// `E` is the bus's own error type; nothing beyond `Debug` (for `Display`) is
/// required of it, so any HAL's error works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The I²C transfer failed.
    I2c(E),
    /// A temperature does not fit the register format the sensor is currently
    /// using (12-bit: −128 °C to 127.9375 °C; 13-bit: −256 °C to 255.9375 °C).
    OutOfRange,
    /// A one-shot conversion was requested while the sensor is converting
    /// continuously; the OS bit only starts a conversion in shutdown mode.
    NotInShutdown,
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::I2c(e) => write!(f, "TMP102 I2C bus error: {e:?}"),
            Error::OutOfRange => f.write_str("temperature out of range for the TMP102's current register format"),
            Error::NotInShutdown => f.write_str("TMP102 one-shot conversion requested while not in shutdown mode"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {}

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
enum Format {
    /// 12-bit, left-justified: the count sits in bits 15:4.
    Normal,
    /// 13-bit, left-justified: the count sits in bits 15:3.
    Extended,
}

impl Format {
    const fn shift(self) -> u32 {
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
    const fn encode(self, t: Temperature) -> Option<[u8; 2]> {
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
const fn decode_temperature(bytes: [u8; 2]) -> Temperature {
    let format = if bytes[1] & 0x01 != 0 { Format::Extended } else { Format::Normal };
    // Arithmetic shift keeps the sign; the flag bit is shifted out.
    Temperature(i16::from_be_bytes(bytes) >> format.shift())
}

/// Conversion rate in continuous mode (CR1:CR0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConversionRate {
    /// 0.25 Hz (one conversion every 4 s).
    Hz0_25 = 0b00,
    /// 1 Hz.
    Hz1 = 0b01,
    /// 4 Hz, the power-up default.
    #[default]
    Hz4 = 0b10,
    /// 8 Hz.
    Hz8 = 0b11,
}

/// Consecutive faults needed to change the alert state (F1:F0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FaultQueue {
    /// 1 fault, the power-up default.
    #[default]
    One = 0b00,
    /// 2 consecutive faults.
    Two = 0b01,
    /// 4 consecutive faults.
    Four = 0b10,
    /// 6 consecutive faults.
    Six = 0b11,
}

/// The 16-bit configuration register (SBOS397, configuration register), first byte in the high
/// half:
///
/// ```text
/// byte 1: OS  R1  R0  F1  F0  POL TM  SD
/// byte 2: CR1 CR0 AL  EM  0   0   0   0
/// ```
///
/// R1:R0 (always 11) and AL are read-only; the device ignores what is written
/// to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config(u16);

impl Config {
    /// Value after power-up: 4 Hz continuous conversion, 12-bit, comparator
    /// mode, active-low alert, one-fault queue.
    pub const POWER_UP: Config = Config(0x60A0);

    const OS: u16 = 1 << 15;
    const FAULT_SHIFT: u32 = 11;
    const FAULT_MASK: u16 = 0b11 << Self::FAULT_SHIFT;
    const POL: u16 = 1 << 10;
    const TM: u16 = 1 << 9;
    const SD: u16 = 1 << 8;
    const CR_SHIFT: u32 = 6;
    const CR_MASK: u16 = 0b11 << Self::CR_SHIFT;
    const AL: u16 = 1 << 5;
    const EM: u16 = 1 << 4;

    /// From the register value (first byte in bits 15:8).
    pub const fn from_bits(bits: u16) -> Config {
        Config(bits)
    }

    /// The register value (first byte in bits 15:8).
    pub const fn bits(self) -> u16 {
        self.0
    }

    const fn flag(self, mask: u16) -> bool {
        self.0 & mask != 0
    }

    const fn with_flag(self, mask: u16, on: bool) -> Config {
        Config(if on { self.0 | mask } else { self.0 & !mask })
    }

    /// OS bit. In shutdown mode it reads 0 while a one-shot conversion runs
    /// and 1 once it has finished.
    pub const fn one_shot_ready(self) -> bool {
        self.flag(Self::OS)
    }

    /// Fault queue length (F1:F0).
    pub const fn fault_queue(self) -> FaultQueue {
        match (self.0 & Self::FAULT_MASK) >> Self::FAULT_SHIFT {
            0b00 => FaultQueue::One,
            0b01 => FaultQueue::Two,
            0b10 => FaultQueue::Four,
            _ => FaultQueue::Six,
        }
    }

    /// POL bit: the ALERT pin is active high.
    pub const fn alert_active_high(self) -> bool {
        self.flag(Self::POL)
    }

    /// TM bit: interrupt mode (otherwise comparator mode).
    pub const fn interrupt_mode(self) -> bool {
        self.flag(Self::TM)
    }

    /// SD bit: continuous conversion is stopped.
    pub const fn is_shutdown(self) -> bool {
        self.flag(Self::SD)
    }

    /// Conversion rate (CR1:CR0).
    pub const fn conversion_rate(self) -> ConversionRate {
        match (self.0 & Self::CR_MASK) >> Self::CR_SHIFT {
            0b00 => ConversionRate::Hz0_25,
            0b01 => ConversionRate::Hz1,
            0b10 => ConversionRate::Hz4,
            _ => ConversionRate::Hz8,
        }
    }

    /// AL bit (read-only): mirrors the ALERT pin's state, polarity included.
    pub const fn alert(self) -> bool {
        self.flag(Self::AL)
    }

    /// EM bit: 13-bit extended mode.
    pub const fn extended_mode(self) -> bool {
        self.flag(Self::EM)
    }

    /// Sets or clears OS; writing 1 in shutdown mode starts one conversion.
    pub const fn with_one_shot(self, on: bool) -> Config {
        self.with_flag(Self::OS, on)
    }

    /// Sets the fault queue length.
    pub const fn with_fault_queue(self, queue: FaultQueue) -> Config {
        Config((self.0 & !Self::FAULT_MASK) | ((queue as u16) << Self::FAULT_SHIFT))
    }

    /// Sets the ALERT pin polarity.
    pub const fn with_alert_active_high(self, on: bool) -> Config {
        self.with_flag(Self::POL, on)
    }

    /// Chooses interrupt (`true`) or comparator (`false`) mode.
    pub const fn with_interrupt_mode(self, on: bool) -> Config {
        self.with_flag(Self::TM, on)
    }

    /// Sets or clears SD.
    pub const fn with_shutdown(self, on: bool) -> Config {
        self.with_flag(Self::SD, on)
    }

    /// Sets the conversion rate.
    pub const fn with_conversion_rate(self, rate: ConversionRate) -> Config {
        Config((self.0 & !Self::CR_MASK) | ((rate as u16) << Self::CR_SHIFT))
    }

    /// Sets or clears EM.
    pub const fn with_extended_mode(self, on: bool) -> Config {
        self.with_flag(Self::EM, on)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::POWER_UP
    }
}

/// A TMP102 on an I²C bus.
#[derive(Debug)]
pub struct Tmp102<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C> Tmp102<I2C> {
    /// Wraps the bus. No bus traffic: the sensor needs no initialisation and
    /// starts converting at 4 Hz on power-up.
    pub fn new(i2c: I2C, address: Address) -> Self {
        Tmp102 { i2c, address: address.bits() }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.i2c
    }
}

impl<I2C: I2c> Tmp102<I2C> {
    /// Reads the last completed conversion, in whichever (12- or 13-bit)
    /// format the register currently holds.
    pub fn read_temperature(&mut self) -> Result<Temperature, Error<I2C::Error>> {
        self.read_register(pointer::TEMPERATURE).map(decode_temperature)
    }

    /// Reads the configuration register.
    pub fn read_config(&mut self) -> Result<Config, Error<I2C::Error>> {
        self.read_register(pointer::CONFIG).map(|bytes| Config(u16::from_be_bytes(bytes)))
    }

    /// Writes the configuration register as given. Note that a set OS bit
    /// starts a one-shot conversion if SD is (or becomes) set.
    pub fn write_config(&mut self, config: Config) -> Result<(), Error<I2C::Error>> {
        self.write_register(pointer::CONFIG, config.0.to_be_bytes())
    }

    /// Sets the continuous conversion rate.
    pub fn set_conversion_rate(&mut self, rate: ConversionRate) -> Result<(), Error<I2C::Error>> {
        self.update_config(|c| c.with_conversion_rate(rate))
    }

    /// Switches between the 12-bit (−55 °C to 128 °C usable) and 13-bit
    /// (up to 150 °C) formats. T_LOW and T_HIGH are interpreted in the new
    /// format, so call [`Self::set_limits`] again afterwards.
    pub fn set_extended_mode(&mut self, enabled: bool) -> Result<(), Error<I2C::Error>> {
        self.update_config(|c| c.with_extended_mode(enabled))
    }

    /// Stops continuous conversion (SD = 1); the sensor then draws about
    /// 0.5 µA and converts only on [`Self::trigger_one_shot`].
    pub fn shutdown(&mut self) -> Result<(), Error<I2C::Error>> {
        self.update_config(|c| c.with_shutdown(true))
    }

    /// Resumes continuous conversion (SD = 0).
    pub fn wake(&mut self) -> Result<(), Error<I2C::Error>> {
        self.update_config(|c| c.with_shutdown(false))
    }

    /// Starts a single conversion (OS = 1). Only valid in shutdown mode, so
    /// it fails with [`Error::NotInShutdown`] (without writing) otherwise.
    /// Poll [`Self::one_shot_ready`] (typically 26 ms, at most 35 ms), then
    /// [`Self::read_temperature`].
    pub fn trigger_one_shot(&mut self) -> Result<(), Error<I2C::Error>> {
        let config = self.read_config()?;
        if !config.is_shutdown() {
            return Err(Error::NotInShutdown);
        }
        self.write_config(config.with_one_shot(true))
    }

    /// Whether the one-shot conversion started by [`Self::trigger_one_shot`]
    /// has finished (OS reads 1).
    pub fn one_shot_ready(&mut self) -> Result<bool, Error<I2C::Error>> {
        self.read_config().map(Config::one_shot_ready)
    }

    /// Writes the alert thresholds T_LOW and T_HIGH in the format of the
    /// current mode (one configuration read to learn it). Both values are
    /// checked before anything is written, so an [`Error::OutOfRange`] leaves
    /// the old limits in place.
    pub fn set_limits(&mut self, low: Temperature, high: Temperature) -> Result<(), Error<I2C::Error>> {
        let format = if self.read_config()?.extended_mode() { Format::Extended } else { Format::Normal };
        let (Some(low), Some(high)) = (format.encode(low), format.encode(high)) else {
            return Err(Error::OutOfRange);
        };
        self.write_register(pointer::T_LOW, low)?;
        self.write_register(pointer::T_HIGH, high)
    }

    /// Read-modify-write of the configuration register.
    fn update_config(&mut self, change: impl FnOnce(Config) -> Config) -> Result<(), Error<I2C::Error>> {
        // OS reads 1 after a finished one-shot; writing that back in shutdown
        // mode would start another conversion nobody asked for.
        let config = self.read_config()?.with_one_shot(false);
        self.write_config(change(config))
    }

    fn read_register(&mut self, pointer: u8) -> Result<[u8; 2], Error<I2C::Error>> {
        let mut bytes = [0; 2];
        self.i2c.write_read(self.address, &[pointer], &mut bytes).map_err(Error::I2c)?;
        Ok(bytes)
    }

    fn write_register(&mut self, pointer: u8, [msb, lsb]: [u8; 2]) -> Result<(), Error<I2C::Error>> {
        self.i2c.write(self.address, &[pointer, msb, lsb]).map_err(Error::I2c)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::format;
    use std::vec;

    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    use super::*;

    const ADDR: u8 = 0x48;

    fn read_reg(pointer: u8, bytes: [u8; 2]) -> Transaction {
        Transaction::write_read(ADDR, vec![pointer], bytes.to_vec())
    }

    fn write_reg(pointer: u8, bytes: [u8; 2]) -> Transaction {
        Transaction::write(ADDR, vec![pointer, bytes[0], bytes[1]])
    }

    fn read_config(bits: u16) -> Transaction {
        read_reg(0x01, bits.to_be_bytes())
    }

    fn write_config(bits: u16) -> Transaction {
        write_reg(0x01, bits.to_be_bytes())
    }

    /// Runs `f` against a driver whose bus expects exactly `expected`.
    fn with_sensor<R>(expected: &[Transaction], f: impl FnOnce(&mut Tmp102<Mock>) -> R) -> R {
        let mut sensor = Tmp102::new(Mock::new(expected), Address::default());
        let result = f(&mut sensor);
        sensor.destroy().done();
        result
    }

    fn t(raw: i16) -> Temperature {
        Temperature::from_raw(raw).unwrap()
    }

    #[test]
    fn addresses_match_the_datasheet() {
        assert_eq!(Address::default(), Address::Gnd);
        let all = [Address::Gnd, Address::Vplus, Address::Sda, Address::Scl].map(u8::from);
        assert_eq!(all, [0x48, 0x49, 0x4A, 0x4B]);
    }

    #[test]
    fn non_default_address_is_used_on_the_bus() {
        let mut i2c = Mock::new(&[Transaction::write_read(0x4B, vec![0x00], vec![0x19, 0x00])]);
        let mut sensor = Tmp102::new(i2c.clone(), Address::Scl);
        assert_eq!(sensor.read_temperature().unwrap(), t(0x190));
        i2c.done();
    }

    /// SBOS397 12-bit temperature data format table: (register bytes, 12-bit count, m°C, °C).
    const NORMAL_MODE_EXAMPLES: [([u8; 2], i16, i32, f32); 11] = [
        ([0x7F, 0xF0], 0x7FF, 127_937, 127.9375),
        ([0x64, 0x00], 0x640, 100_000, 100.0),
        ([0x50, 0x00], 0x500, 80_000, 80.0),
        ([0x4B, 0x00], 0x4B0, 75_000, 75.0),
        ([0x32, 0x00], 0x320, 50_000, 50.0),
        ([0x19, 0x00], 0x190, 25_000, 25.0),
        ([0x00, 0x40], 0x004, 250, 0.25),
        ([0x00, 0x00], 0x000, 0, 0.0),
        ([0xFF, 0xC0], -0x004, -250, -0.25),    // 0xFFC
        ([0xE7, 0x00], -0x190, -25_000, -25.0), // 0xE70
        ([0xC9, 0x00], -0x370, -55_000, -55.0), // 0xC90
    ];

    #[test]
    fn reads_every_datasheet_example_in_normal_mode() {
        let expected: std::vec::Vec<_> =
            NORMAL_MODE_EXAMPLES.iter().map(|(bytes, ..)| read_reg(0x00, *bytes)).collect();
        with_sensor(&expected, |sensor| {
            for (bytes, raw, milli, celsius) in NORMAL_MODE_EXAMPLES {
                let temp = sensor.read_temperature().unwrap();
                assert_eq!(temp.raw(), raw, "{bytes:02X?}");
                assert_eq!(temp.milli_celsius(), milli, "{bytes:02X?}");
                assert_eq!(temp.celsius(), celsius, "{bytes:02X?}");
            }
        });
    }

    /// 13-bit counts shifted left by 3 with the EM flag in bit 0.
    const EXTENDED_MODE_EXAMPLES: [([u8; 2], i16, i32); 6] = [
        ([0x4B, 0x01], 0x960, 150_000),  // 0x960 << 3 | 1 = 0x4B01
        ([0x7F, 0xF9], 0xFFF, 255_937),  // 13-bit maximum
        ([0x40, 0x01], 0x800, 128_000),  // just past the 12-bit range
        ([0x0C, 0x81], 0x190, 25_000),   // same 25 °C, other layout
        ([0xFF, 0xE1], -0x004, -250),    // 0x1FFC
        ([0xE4, 0x81], -0x370, -55_000), // 0x1C90
    ];

    #[test]
    fn reads_extended_mode_by_the_em_flag() {
        let expected: std::vec::Vec<_> =
            EXTENDED_MODE_EXAMPLES.iter().map(|(bytes, ..)| read_reg(0x00, *bytes)).collect();
        with_sensor(&expected, |sensor| {
            for (bytes, raw, milli) in EXTENDED_MODE_EXAMPLES {
                let temp = sensor.read_temperature().unwrap();
                assert_eq!(temp.raw(), raw, "{bytes:02X?}");
                assert_eq!(temp.milli_celsius(), milli, "{bytes:02X?}");
            }
        });
        assert_eq!(decode_temperature([0x4B, 0x01]).celsius(), 150.0);
        // Without the flag the same high byte is the 12-bit 75 °C.
        assert_eq!(decode_temperature([0x4B, 0x00]).celsius(), 75.0);
    }

    #[test]
    fn milli_celsius_rounds_half_steps_toward_zero() {
        assert_eq!(t(1).milli_celsius(), 62);
        assert_eq!(t(-1).milli_celsius(), -62);
        assert_eq!(t(3).milli_celsius(), 187);
        assert_eq!(t(-3).milli_celsius(), -187);
        assert_eq!(Temperature::MIN.milli_celsius(), -256_000);
        assert_eq!(Temperature::MAX.milli_celsius(), 255_937);
    }

    #[test]
    fn from_milli_celsius_rounds_to_nearest_and_checks_range() {
        assert_eq!(Temperature::from_milli_celsius(25_000), Some(t(400)));
        assert_eq!(Temperature::from_milli_celsius(31), Some(t(0))); // 0.496 step
        assert_eq!(Temperature::from_milli_celsius(32), Some(t(1))); // 0.512 step
        assert_eq!(Temperature::from_milli_celsius(-31), Some(t(0)));
        assert_eq!(Temperature::from_milli_celsius(-32), Some(t(-1)));
        assert_eq!(Temperature::from_milli_celsius(-256_000), Some(Temperature::MIN));
        assert_eq!(Temperature::from_milli_celsius(-256_032), None);
        assert_eq!(Temperature::from_milli_celsius(255_968), Some(Temperature::MAX));
        assert_eq!(Temperature::from_milli_celsius(255_969), None);
        assert_eq!(Temperature::from_milli_celsius(i32::MAX), None);
        assert_eq!(Temperature::from_milli_celsius(i32::MIN), None);
        for raw in Temperature::MIN.raw()..=Temperature::MAX.raw() {
            assert_eq!(Temperature::from_milli_celsius(t(raw).milli_celsius()), Some(t(raw)), "raw {raw}");
        }
    }

    #[test]
    fn from_raw_checks_the_13_bit_range() {
        assert_eq!(Temperature::from_raw(-4096), Some(Temperature::MIN));
        assert_eq!(Temperature::from_raw(4095), Some(Temperature::MAX));
        assert_eq!(Temperature::from_raw(-4097), None);
        assert_eq!(Temperature::from_raw(4096), None);
    }

    #[test]
    fn bus_error_surfaces_as_i2c_error() {
        let failing = read_reg(0x00, [0, 0]).with_error(ErrorKind::Other);
        let err = with_sensor(&[failing], |sensor| sensor.read_temperature().unwrap_err());
        assert_eq!(err, Error::I2c(ErrorKind::Other));
        assert!(format!("{err}").contains("bus error"), "{err}");
    }

    #[test]
    fn failed_config_read_writes_nothing() {
        let failing = read_config(0x60A0).with_error(ErrorKind::Other);
        let err = with_sensor(&[failing], |sensor| sensor.shutdown().unwrap_err());
        assert_eq!(err, Error::I2c(ErrorKind::Other));
    }

    #[test]
    fn failed_config_write_is_reported() {
        let expected = [read_config(0x60A0), write_config(0x61A0).with_error(ErrorKind::Other)];
        let err = with_sensor(&expected, |sensor| sensor.shutdown().unwrap_err());
        assert_eq!(err, Error::I2c(ErrorKind::Other));
    }

    #[test]
    fn power_up_config_decodes() {
        let config = with_sensor(&[read_config(0x60A0)], |sensor| sensor.read_config().unwrap());
        assert_eq!(config, Config::POWER_UP);
        assert_eq!(config, Config::default());
        assert!(!config.one_shot_ready());
        assert_eq!(config.fault_queue(), FaultQueue::One);
        assert!(!config.alert_active_high());
        assert!(!config.interrupt_mode());
        assert!(!config.is_shutdown());
        assert_eq!(config.conversion_rate(), ConversionRate::Hz4);
        assert!(config.alert());
        assert!(!config.extended_mode());
    }

    #[test]
    fn config_builders_touch_only_their_bits() {
        let c = Config::POWER_UP;
        assert_eq!(c.with_fault_queue(FaultQueue::Six).bits(), 0x78A0);
        assert_eq!(c.with_fault_queue(FaultQueue::Two).fault_queue(), FaultQueue::Two);
        assert_eq!(c.with_alert_active_high(true).bits(), 0x64A0);
        assert_eq!(c.with_interrupt_mode(true).bits(), 0x62A0);
        assert_eq!(c.with_shutdown(true).bits(), 0x61A0);
        assert_eq!(c.with_one_shot(true).bits(), 0xE0A0);
        assert_eq!(c.with_extended_mode(true).bits(), 0x60B0);
        assert_eq!(c.with_conversion_rate(ConversionRate::Hz0_25).bits(), 0x6020);
        assert_eq!(Config::from_bits(0x6060).conversion_rate(), ConversionRate::Hz1);
    }

    #[test]
    fn write_config_sends_pointer_then_msb_lsb() {
        with_sensor(&[write_config(0x7CE0)], |sensor| sensor.write_config(Config::from_bits(0x7CE0)).unwrap());
    }

    #[test]
    fn shutdown_and_wake_flip_only_sd() {
        with_sensor(&[read_config(0x60A0), write_config(0x61A0)], |sensor| sensor.shutdown().unwrap());
        with_sensor(&[read_config(0x61A0), write_config(0x60A0)], |sensor| sensor.wake().unwrap());
    }

    #[test]
    fn conversion_rate_writes_cr_bits() {
        let cases = [
            (ConversionRate::Hz0_25, 0x6020),
            (ConversionRate::Hz1, 0x6060),
            (ConversionRate::Hz4, 0x60A0),
            (ConversionRate::Hz8, 0x60E0),
        ];
        for (rate, bits) in cases {
            with_sensor(&[read_config(0x60A0), write_config(bits)], |sensor| sensor.set_conversion_rate(rate).unwrap());
        }
    }

    #[test]
    fn extended_mode_writes_em_bit() {
        with_sensor(&[read_config(0x60A0), write_config(0x60B0)], |sensor| sensor.set_extended_mode(true).unwrap());
        with_sensor(&[read_config(0x60B0), write_config(0x60A0)], |sensor| sensor.set_extended_mode(false).unwrap());
    }

    #[test]
    fn read_modify_write_does_not_retrigger_a_finished_one_shot() {
        // Shut down with OS = 1 (conversion done): writing OS back would start another.
        let expected = [read_config(0xE1A0), write_config(0x6160)];
        with_sensor(&expected, |sensor| sensor.set_conversion_rate(ConversionRate::Hz1).unwrap());
    }

    #[test]
    fn one_shot_sets_os_in_shutdown() {
        with_sensor(&[read_config(0x61A0), write_config(0xE1A0)], |sensor| sensor.trigger_one_shot().unwrap());
    }

    #[test]
    fn one_shot_outside_shutdown_is_refused_without_writing() {
        let err = with_sensor(&[read_config(0x60A0)], |sensor| sensor.trigger_one_shot().unwrap_err());
        assert_eq!(err, Error::NotInShutdown);
    }

    #[test]
    fn one_shot_ready_follows_os() {
        let ready = with_sensor(&[read_config(0x61A0), read_config(0xE1A0)], |sensor| {
            [sensor.one_shot_ready().unwrap(), sensor.one_shot_ready().unwrap()]
        });
        assert_eq!(ready, [false, true]);
    }

    #[test]
    fn set_limits_writes_12_bit_left_justified_values() {
        // The power-up limits: T_LOW 75 °C, T_HIGH 80 °C.
        let expected = [read_config(0x60A0), write_reg(0x02, [0x4B, 0x00]), write_reg(0x03, [0x50, 0x00])];
        with_sensor(&expected, |sensor| sensor.set_limits(t(0x4B0), t(0x500)).unwrap());

        let expected = [read_config(0x60A0), write_reg(0x02, [0xE7, 0x00]), write_reg(0x03, [0x00, 0x40])];
        let (low, high) = (Temperature::from_milli_celsius(-25_000).unwrap(), t(4));
        with_sensor(&expected, |sensor| sensor.set_limits(low, high).unwrap());
    }

    #[test]
    fn set_limits_writes_13_bit_values_in_extended_mode() {
        // −55 °C = 0x1C90 → 0xE480, 150 °C = 0x960 → 0x4B00; no EM flag in limits.
        let expected = [read_config(0x60B0), write_reg(0x02, [0xE4, 0x80]), write_reg(0x03, [0x4B, 0x00])];
        with_sensor(&expected, |sensor| sensor.set_limits(t(-0x370), t(0x960)).unwrap());
    }

    #[test]
    fn set_limits_out_of_range_writes_nothing() {
        // 150 °C and −128.0625 °C need the 13-bit format.
        let err = with_sensor(&[read_config(0x60A0)], |sensor| sensor.set_limits(t(0), t(0x960)).unwrap_err());
        assert_eq!(err, Error::OutOfRange);
        let err = with_sensor(&[read_config(0x60A0)], |sensor| sensor.set_limits(t(-2049), t(0)).unwrap_err());
        assert_eq!(err, Error::OutOfRange);
        // The 12-bit extremes themselves are fine.
        let expected = [read_config(0x60A0), write_reg(0x02, [0x80, 0x00]), write_reg(0x03, [0x7F, 0xF0])];
        with_sensor(&expected, |sensor| sensor.set_limits(t(-2048), t(2047)).unwrap());
    }

    #[test]
    fn destroy_returns_the_bus() {
        let mut sensor =
            Tmp102::new(Mock::new(&[read_reg(0x00, [0x19, 0x00]), read_reg(0x01, [0x60, 0xA0])]), Address::Gnd);
        assert_eq!(sensor.read_temperature().unwrap().celsius(), 25.0);
        let mut i2c = sensor.destroy();
        // The same bus, with its remaining expectation, is usable directly.
        let mut buf = [0; 2];
        i2c.write_read(ADDR, &[0x01], &mut buf).unwrap();
        assert_eq!(buf, [0x60, 0xA0]);
        i2c.done();
    }

    #[test]
    fn errors_display() {
        assert!(format!("{}", Error::<ErrorKind>::OutOfRange).contains("out of range"));
        assert!(format!("{}", Error::<ErrorKind>::NotInShutdown).contains("shutdown"));
    }
}
