//! Walking bytecode one instruction at a time, with immediates decoded.

use crate::opcodes::Opcode;

/// One decoded instruction at a byte offset of the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// Byte offset of the opcode.
    pub pc: u32,
    /// The instruction.
    pub opcode: Opcode,
    /// The sign-extended immediate of a PUSH; 0 otherwise.
    pub immediate: i64,
}

/// Why a byte sequence is not a sequence of instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The byte at `pc` is no opcode.
    UnknownOpcode { pc: u32, byte: u8 },
    /// The PUSH at `pc` runs past the end of the code.
    TruncatedImmediate { pc: u32 },
}

/// Reads a little-endian sign-extended immediate of `bytes.len()` (1, 2, 4 or 8) bytes.
#[inline]
pub fn read_immediate(bytes: &[u8]) -> i64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    let shift = 64 - 8 * n as u32;
    if n == 0 {
        0
    } else {
        (i64::from_le_bytes(buf) << shift) >> shift
    }
}

/// Iterates over the instructions of `code`, stopping at the first decode error.
pub fn decode_instructions(
    code: &[u8],
) -> impl Iterator<Item = Result<Instruction, DecodeError>> + '_ {
    let mut pc = 0usize;
    let mut failed = false;
    core::iter::from_fn(move || {
        if failed || pc >= code.len() {
            return None;
        }
        let at = pc as u32;
        let byte = code[pc];
        let Some(opcode) = Opcode::from_byte(byte) else {
            failed = true;
            return Some(Err(DecodeError::UnknownOpcode { pc: at, byte }));
        };
        let imm_len = opcode.info().immediate as usize;
        let end = pc + 1 + imm_len;
        if end > code.len() {
            failed = true;
            return Some(Err(DecodeError::TruncatedImmediate { pc: at }));
        }
        let immediate = read_immediate(&code[pc + 1..end]);
        pc = end;
        Some(Ok(Instruction {
            pc: at,
            opcode,
            immediate,
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediates_are_sign_extended_little_endian() {
        assert_eq!(read_immediate(&[0xff]), -1);
        assert_eq!(read_immediate(&[0x7f]), 127);
        assert_eq!(read_immediate(&[0x00, 0x80]), -32768);
        assert_eq!(read_immediate(&[0x01, 0x02, 0x00, 0x00]), 0x0201);
        assert_eq!(read_immediate(&(-5i64).to_le_bytes()), -5);
    }

    #[test]
    fn decoding_stops_at_errors() {
        let code = [0x60, 0x05, 0x62, 0x01];
        let all: Vec<_> = decode_instructions(&code).collect();
        assert_eq!(
            all[0],
            Ok(Instruction {
                pc: 0,
                opcode: Opcode::PUSH1,
                immediate: 5
            })
        );
        assert_eq!(all[1], Err(DecodeError::TruncatedImmediate { pc: 2 }));
        assert_eq!(all.len(), 2);
        let bad: Vec<_> = decode_instructions(&[0x01, 0xff, 0x01]).collect();
        assert_eq!(
            bad.last(),
            Some(&Err(DecodeError::UnknownOpcode { pc: 1, byte: 0xff }))
        );
    }
}
