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

mod config;
mod temperature;

use core::fmt;

use embedded_hal::i2c::I2c;

pub use config::{Config, ConversionRate, FaultQueue};
pub use temperature::Temperature;
use temperature::{decode_temperature, Format};

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
        self.read_register(pointer::CONFIG).map(|bytes| Config::from_bits(u16::from_be_bytes(bytes)))
    }

    /// Writes the configuration register as given. Note that a set OS bit
    /// starts a one-shot conversion if SD is (or becomes) set.
    pub fn write_config(&mut self, config: Config) -> Result<(), Error<I2C::Error>> {
        self.write_register(pointer::CONFIG, config.bits().to_be_bytes())
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
