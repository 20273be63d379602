//! The SmartVM instruction set.
//!
//! This crate is the single source of truth for what a SmartVM program is: the opcode table
//! ([`opcodes`]), the program container with its weight-block manifest ([`program`]), the static
//! validator that every program passes before it may run ([`validate`]) and, with `std`, the text
//! assembler and disassembler ([`asm`]). It is `no_std` so the runtime can validate uploads.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod code;
pub mod opcodes;
pub mod pack;
pub mod program;
pub mod validate;

#[cfg(feature = "std")]
pub mod asm;

pub use code::{decode_instructions, Instruction};
pub use opcodes::{GasClass, OpInfo, Opcode, TABLE};
pub use program::{BlockInfo, Program, ProgramError, Shape, MAX_BLOCKS, MAX_CODE_LEN};
pub use validate::{validate, ValidationError};

/// Hash used for weight-block manifests: BLAKE2b with a 32-byte digest, the same function the
/// chain uses for storage hashing, so a manifest can be checked against uploaded blocks.
pub fn block_hash(bytes: &[u8]) -> [u8; 32] {
    use blake2::digest::{consts::U32, Digest};
    let mut hasher = blake2::Blake2b::<U32>::new();
    hasher.update(bytes);
    hasher.finalize().into()
}
