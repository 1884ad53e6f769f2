//! The configuration register's contents (SBOS397, configuration register):
//! [`Config`] and its fields.

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
