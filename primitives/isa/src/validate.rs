//! Static checks every program passes before it may be stored or run.
//!
//! Rejected: unknown opcodes, PUSH immediates running past the code, static jumps to anything
//! but a JUMPDEST, an instruction reached at two different stack heights, and any path from the
//! entry on which an instruction would pop more words than the stack holds (or push past
//! [`STACK_LIMIT`]). A jump is static when its destination operand (the top word for `JUMP`; the
//! word below the condition for `JUMPI`, whose operands are `dest cond`) was pushed by a PUSH in
//! the same basic block, found by following PUSH, DUP and SWAP through the block. Targets of
//! dynamic jumps are checked when they execute.
//!
//! Every instruction has one stack height, the same on every statically known path (as
//! WebAssembly and the EVM Object Format require), so the analysis visits each instruction once:
//! its cost is linear in the program. An earlier validator kept the minimum height over paths
//! and could lower an instruction's height up to 1,024 times, so a crafted 256 KiB program took
//! about 10⁸ steps to validate while being charged as a benign one. A loop whose body changes
//! the height is refused at its head (`StackHeightMismatch`).

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
    /// The instruction at `pc` is reached at stack height `first` on one path and `other` on
    /// another.
    StackHeightMismatch { pc: u32, first: u32, other: u32 },
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
    for (i, destination) in jump_destinations(&instructions).into_iter().enumerate() {
        if let Some(target) = destination {
            static_target[i] = Some(jumpdest(target).ok_or(ValidationError::BadJumpTarget {
                pc: instructions[i].pc,
                target,
            })?);
        }
    }

    stack_heights(&instructions, &static_target).map(|_| ())
}

/// The one stack height of every instruction reachable from the entry through fall-through and
/// static jumps (`u32::MAX` where unreachable), or the first fault. Each instruction is queued at
/// most once.
fn stack_heights(
    instructions: &[Instruction],
    static_target: &[Option<usize>],
) -> Result<Vec<u32>, ValidationError> {
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
        let mut visit = |j: usize| match height[j] {
            u32::MAX => {
                height[j] = next;
                work.push(j);
                Ok(())
            }
            known if known == next => Ok(()),
            known => Err(ValidationError::StackHeightMismatch {
                pc: instructions[j].pc,
                first: known,
                other: next,
            }),
        };
        if let Some(t) = static_target[i] {
            visit(t)?;
        }
        let falls_through = !ins.opcode.is_terminator();
        if falls_through && i + 1 < instructions.len() {
            visit(i + 1)?;
        }
    }
    Ok(height)
}

/// For each instruction, the destination of a jump whose destination operand is a constant
/// pushed in the same basic block; `None` for other instructions and dynamic jumps. One pass:
/// a symbolic stack (top last) holds what the block pushed, `None` where a word is computed;
/// words from before the block are unknown, and a JUMPDEST (a merge point) starts afresh.
fn jump_destinations(instructions: &[Instruction]) -> Vec<Option<i64>> {
    let mut out = vec![None; instructions.len()];
    let mut known: Vec<Option<i64>> = Vec::new();
    // The word `depth` places below the top (0 = top), `None` when unknown.
    let word = |known: &[Option<i64>], depth: usize| -> Option<i64> {
        known.len().checked_sub(depth + 1).and_then(|at| known[at])
    };
    for (i, ins) in instructions.iter().enumerate() {
        let op = ins.opcode;
        match op {
            Opcode::JUMPDEST => known.clear(),
            Opcode::JUMP => out[i] = word(&known, 0),
            Opcode::JUMPI => out[i] = word(&known, 1),
            _ => {}
        }
        let info = op.info();
        let byte = info.byte;
        if (Opcode::DUP1 as u8..=Opcode::DUP16 as u8).contains(&byte) {
            let copied = word(&known, (byte - Opcode::DUP1 as u8) as usize);
            known.push(copied);
        } else if (Opcode::SWAP1 as u8..=Opcode::SWAP16 as u8).contains(&byte) {
            let depth = (byte - Opcode::SWAP1 as u8) as usize + 1;
            // Make the swapped word explicit (unknown) when it lies below what the block pushed.
            if known.len() <= depth {
                let missing = depth + 1 - known.len();
                known.splice(0..0, core::iter::repeat_n(None, missing));
            }
            let top = known.len() - 1;
            known.swap(top, top - depth);
        } else {
            let popped = known.len().saturating_sub(info.inputs as usize);
            known.truncate(popped);
            let pushed = match op {
                Opcode::PUSH1 | Opcode::PUSH2 | Opcode::PUSH4 | Opcode::PUSH8 => {
                    Some(ins.immediate)
                }
                _ => None,
            };
            known.extend(core::iter::repeat_n(pushed, info.outputs as usize));
        }
        if op.is_terminator() {
            known.clear();
        }
        // Only the top few words can be read by DUP/SWAP/JUMP: keep the symbolic stack short.
        if known.len() > 2 * STACK_LIMIT {
            known.drain(..STACK_LIMIT);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_counted_loop() {
        // PUSH1 3; JUMPDEST(2); PUSH1 1; SUB; PUSH1 2; DUP2; JUMPI; STOP
        // JUMPI takes `dest cond`: dest 2 lies below the condition, the DUP'd counter.
        let code = [0x60, 3, 0x5b, 0x60, 1, 0x03, 0x60, 2, 0x81, 0x58, 0x00];
        assert_eq!(validate_code(&code), Ok(()));
    }

    /// `PUSH @target; PUSH 1; JUMPI` jumps to `target`: the destination is JUMPI's deeper
    /// operand, not the condition on top (which an earlier validator took for it).
    #[test]
    fn jumpi_reads_its_destination_below_the_condition() {
        // 0: PUSH1 7; 2: PUSH1 1; 4: JUMPI; 5: STOP; 6: STOP; 7: JUMPDEST; 8: STOP
        let code = [0x60, 7, 0x60, 1, 0x58, 0x00, 0x00, 0x5b, 0x00];
        assert_eq!(validate_code(&code), Ok(()));
        // The same with a destination that is no JUMPDEST is refused at the JUMPI.
        let code = [0x60, 6, 0x60, 1, 0x58, 0x00, 0x00, 0x5b, 0x00];
        assert_eq!(
            validate_code(&code),
            Err(ValidationError::BadJumpTarget { pc: 4, target: 6 })
        );
        // A destination moved into place by SWAP1 is followed too: PUSH1 1; PUSH1 8; SWAP1; JUMPI.
        let code = [0x60, 1, 0x60, 9, 0x90, 0x58, 0x00, 0x00, 0x00, 0x5b, 0x00];
        assert_eq!(validate_code(&code), Ok(()));
        let code = [0x60, 1, 0x60, 8, 0x90, 0x58, 0x00, 0x00, 0x00, 0x5b, 0x00];
        assert_eq!(
            validate_code(&code),
            Err(ValidationError::BadJumpTarget { pc: 5, target: 8 })
        );
    }

    /// The static edge of a JUMPI is analysed: a loop body that pops more than it pushes
    /// comes back to its head at another height.
    #[test]
    fn a_jumpi_loop_that_shrinks_the_stack_is_refused() {
        // PUSH1 1; PUSH1 1; JUMPDEST(4); POP; PUSH1 4; PUSH1 1; JUMPI; STOP
        let code = [0x60, 1, 0x60, 1, 0x5b, 0x50, 0x60, 4, 0x60, 1, 0x58, 0x00];
        assert_eq!(
            validate_code(&code),
            Err(ValidationError::StackHeightMismatch {
                pc: 4,
                first: 2,
                other: 1
            })
        );
    }

    /// The program that made the old validator quadratic: 1,000 PUSHes, a 250,000-JUMPDEST run,
    /// then `POP; PUSH @run; JUMP` back into the run one word lower (252 KB). It is refused at
    /// the run's head; without the jump back, every instruction gets its one height.
    #[test]
    fn the_adversarial_program_is_refused_at_its_loop_head() {
        let mut code = Vec::new();
        for _ in 0..1_000 {
            code.extend_from_slice(&[0x60, 1]);
        }
        let run = code.len() as u32;
        code.extend(core::iter::repeat_n(0x5b, 250_000));
        code.push(0x50);
        code.push(0x63); // PUSH8
        code.extend_from_slice(&(run as u64).to_le_bytes());
        code.push(0x57);
        assert_eq!(
            validate_code(&code),
            Err(ValidationError::StackHeightMismatch {
                pc: run,
                first: 1_000,
                other: 999
            })
        );
        let benign = &code[..code.len() - 10];
        let instructions: Vec<Instruction> = decode_instructions(benign)
            .collect::<Result<_, _>>()
            .unwrap();
        let heights = stack_heights(&instructions, &vec![None; instructions.len()]).unwrap();
        assert_eq!(
            heights[instructions.len() - 1],
            1_000,
            "the POP after the run"
        );
        assert_eq!(validate_code(benign), Ok(()));
    }

    /// Two paths that merge at different heights (an if without an else that pushes) are
    /// refused, naming the merge point.
    #[test]
    fn a_merge_at_two_heights_is_refused() {
        // 0: PUSH1 0; 2: PUSH1 8; 4: SWAP1; 5: JUMPI (to 8 when 0 != 0); 6: PUSH1 1; 8: JUMPDEST; 9: STOP
        let code = [0x60, 0, 0x60, 8, 0x90, 0x58, 0x60, 1, 0x5b, 0x00];
        assert_eq!(
            validate_code(&code),
            Err(ValidationError::StackHeightMismatch {
                pc: 8,
                first: 0,
                other: 1
            })
        );
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
        // A loop that pops one more word on every turn reaches its head one word lower.
        // PUSH1 1; PUSH1 1; JUMPDEST(4); POP; PUSH1 4; JUMP
        assert_eq!(
            validate_code(&[0x60, 1, 0x60, 1, 0x5b, 0x50, 0x60, 4, 0x57]),
            Err(ValidationError::StackHeightMismatch {
                pc: 4,
                first: 2,
                other: 1
            })
        );
    }

    #[test]
    fn underflow_is_found_only_on_reachable_paths_through_static_jumps() {
        // 0: PUSH1 5; 2: JUMP; 3: ADD (unreachable); 4: STOP; 5: JUMPDEST; 6: STOP
        let code = [0x60, 5, 0x57, 0x01, 0x00, 0x5b, 0x00];
        assert_eq!(validate_code(&code), Ok(()));
    }
}
