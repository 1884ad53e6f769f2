//! A simulated I²C bus with a TMP102 on it. QEMU's lm3s6965evb has no
//! temperature sensor, so the *bus* is simulated here; the driver talking to
//! it is the real `cairn_tmp102` code, register by register.

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, Operation, SevenBitAddress};

/// The TMP102's registers as the datasheet lays them out, behind address
/// 0x48; the temperature follows [`reading`] each time it is read.
pub struct SimulatedTmp102Bus {
    pointer: u8,
    config: u16,
    conversions: u32,
}

/// The temperature of conversion `n`, in 1/16 °C: a slow wave between
/// −12 °C and +28 °C (the e2e test computes the same).
pub fn reading(n: u32) -> i16 {
    let step = (n * 37 % 640) as i16; // 0..640 sixteenths = 0..40 °C
    step - 192
}

impl SimulatedTmp102Bus {
    pub fn new() -> Self {
        SimulatedTmp102Bus { pointer: 0, config: 0x60A0, conversions: 0 }
    }

    fn register(&mut self) -> [u8; 2] {
        match self.pointer {
            0x00 => {
                let raw = reading(self.conversions);
                self.conversions += 1;
                // 12-bit, left-justified, two's complement.
                ((raw << 4) as u16).to_be_bytes()
            }
            0x01 => self.config.to_be_bytes(),
            _ => [0, 0],
        }
    }
}

impl ErrorType for SimulatedTmp102Bus {
    type Error = ErrorKind;
}

impl I2c<SevenBitAddress> for SimulatedTmp102Bus {
    fn transaction(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
        if address != 0x48 {
            return Err(ErrorKind::NoAcknowledge(embedded_hal::i2c::NoAcknowledgeSource::Address));
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    if let Some((&pointer, data)) = bytes.split_first() {
                        self.pointer = pointer;
                        if pointer == 0x01 && data.len() == 2 {
                            self.config = u16::from_be_bytes([data[0], data[1]]);
                        }
                    }
                }
                Operation::Read(buf) => {
                    let reg = self.register();
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = reg.get(i).copied().unwrap_or(0);
                    }
                }
            }
        }
        Ok(())
    }
}
