//! Static checks every program passes before it may be stored or run.
//!
//! Rejected: unknown opcodes, PUSH immediates running past the code, static jumps (a PUSH
//! directly followed by JUMP/JUMPI) to anything but a JUMPDEST, and any path from the entry on
//! which an instruction would pop more words than the stack holds. Stack heights are tracked
//! per instruction as the minimum over all statically known paths, so a loop that shrinks the
//! stack on each turn is rejected too. Targets of dynamic jumps are checked when they execute.

use alloc::{vec, vec::Vec};

use crate::code::{decode_instructions, DecodeError, Instruction};
use crate::opcodes::Opcode;
use crate::program::Program;

/// Deepest the operand stack may grow; the interpreter enforces the same bound.
pub const STACK_LIMIT: usize = 1024;

/// Why a program's code is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidationError {
    /// The byte at `pc` is no opcode.
    UnknownOpcode { pc: u32, byte: u8 },
    /// A PUSH at `pc` runs past the end of the code.
    TruncatedImmediate { pc: u32 },
    /// The static jump at `pc` goes to `target`, which is not a JUMPDEST.
    BadJumpTarget { pc: u32, target: i64 },
    /// On some path the instruction at `pc` pops more than the stack holds.
    StackUnderflow { pc: u32 },
    /// On some path the stack grows past [`STACK_LIMIT`] at `pc`.
    StackOverflow { pc: u32 },
}

impl From<DecodeError> for ValidationError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::UnknownOpcode { pc, byte } => ValidationError::UnknownOpcode { pc, byte },
            DecodeError::TruncatedImmediate { pc } => ValidationError::TruncatedImmediate { pc },
        }
    }
}

/// Validates a program's code; see the module docs for what is checked.
pub fn validate(program: &Program) -> Result<(), ValidationError> {
    validate_code(&program.code)
}

/// Validates bare bytecode.
pub fn validate_code(code: &[u8]) -> Result<(), ValidationError> {
    let instructions: Vec<Instruction> = decode_instructions(code).collect::<Result<_, _>>()?;
    // Map byte offsets to instruction indices for jump resolution.
    let mut index_at = vec![u32::MAX; code.len()];
    for (i, ins) in instructions.iter().enumerate() {
        index_at[ins.pc as usize] = i as u32;
    }
    let jumpdest = |target: i64| -> Option<usize> {
        let t = usize::try_from(target).ok().filter(|t| *t < code.len())?;
        let i = index_at[t];
        (i != u32::MAX && instructions[i as usize].opcode == Opcode::JUMPDEST).then_some(i as usize)
    };

    // Static jump targets, checked once each.
    let mut static_target = vec![None; instructions.len()];
    for i in 1..instructions.len() {
        let (prev, ins) = (instructions[i - 1], instructions[i]);
        let is_push = matches!(
            prev.opcode,
            Opcode::PUSH1 | Opcode::PUSH2 | Opcode::PUSH4 | Opcode::PUSH8
        );
        if is_push && matches!(ins.opcode, Opcode::JUMP | Opcode::JUMPI) {
            match jumpdest(prev.immediate) {
                Some(t) => static_target[i] = Some(t),
                None => {
                    return Err(ValidationError::BadJumpTarget {
                        pc: ins.pc,
                        target: prev.immediate,
                    })
                }
            }
        }
    }

    // Minimum stack height at each instruction over all known paths from the entry.
    let mut height = vec![u32::MAX; instructions.len()];
    let mut work = Vec::new();
    if !instructions.is_empty() {
        height[0] = 0;
        work.push(0usize);
    }
    while let Some(i) = work.pop() {
        let ins = instructions[i];
        let info = ins.opcode.info();
        let h = height[i];
        if h < info.inputs as u32 {
            return Err(ValidationError::StackUnderflow { pc: ins.pc });
        }
        let next = h - info.inputs as u32 + info.outputs as u32;
        if next as usize > STACK_LIMIT {
            return Err(ValidationError::StackOverflow { pc: ins.pc });
        }
        let mut visit = |j: usize| {
            if next < height[j] {
                height[j] = next;
                work.push(j);
            }
        };
        if let Some(t) = static_target[i] {
            visit(t);
        }
        let falls_through = !ins.opcode.is_terminator();
        if falls_through && i + 1 < instructions.len() {
            visit(i + 1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_counted_loop() {
        // PUSH1 3; JUMPDEST(2); PUSH1 1; SUB; DUP1; PUSH1 2; JUMPI; STOP
        let code = [0x60, 3, 0x5b, 0x60, 1, 0x03, 0x80, 0x60, 2, 0x58, 0x00];
        assert_eq!(validate_code(&code), Ok(()));
    }

    #[test]
    fn rejects_each_fault_with_its_position() {
        assert_eq!(
            validate_code(&[0x01]),
            Err(ValidationError::StackUnderflow { pc: 0 })
        );
        assert_eq!(
            validate_code(&[0x60]),
            Err(ValidationError::TruncatedImmediate { pc: 0 })
        );
        assert_eq!(
            validate_code(&[0x00, 0xef]),
            Err(ValidationError::UnknownOpcode { pc: 1, byte: 0xef })
        );
        // PUSH1 3; JUMP; STOP; ADD  -> target 3 is ADD, not a JUMPDEST
        assert_eq!(
            validate_code(&[0x60, 3, 0x57, 0x01]),
            Err(ValidationError::BadJumpTarget { pc: 2, target: 3 })
        );
        // A loop that pops one more word on every turn underflows eventually.
        // PUSH1 1; PUSH1 1; JUMPDEST(4); POP; PUSH1 4; JUMP
        assert_eq!(
            validate_code(&[0x60, 1, 0x60, 1, 0x5b, 0x50, 0x60, 4, 0x57]),
            Err(ValidationError::StackUnderflow { pc: 5 })
        );
    }

    #[test]
    fn underflow_is_found_only_on_reachable_paths_through_static_jumps() {
        // 0: PUSH1 5; 2: JUMP; 3: ADD (unreachable); 4: STOP; 5: JUMPDEST; 6: STOP
        let code = [0x60, 5, 0x57, 0x01, 0x00, 0x5b, 0x00];
        assert_eq!(validate_code(&code), Ok(()));
    }
}
