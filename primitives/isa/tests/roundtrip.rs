//! Any well-formed instruction sequence survives disassemble -> assemble unchanged, and any
//! container survives encode -> decode.

use proptest::prelude::*;
use smartvm_isa::{asm, Program, Shape, TABLE};

fn instruction() -> impl Strategy<Value = Vec<u8>> {
    (0..TABLE.len(), any::<i64>()).prop_map(|(row, imm)| {
        let info = &TABLE[row];
        let mut bytes = vec![info.byte];
        bytes.extend_from_slice(&imm.to_le_bytes()[..info.immediate as usize]);
        bytes
    })
}

proptest! {
    #[test]
    fn disassembly_round_trips(code in prop::collection::vec(instruction(), 1..64), blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..16), 0..4)) {
        let program = Program {
            input: Shape::new(3, 1, 8, 8),
            output_len: 10,
            code: code.concat(),
            blocks: Program::manifest_of(&blocks),
        };
        let text = asm::disassemble(&program);
        prop_assert_eq!(asm::assemble(&text).unwrap(), program.clone());
        prop_assert_eq!(Program::decode(&program.encode()).unwrap(), program);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Program::decode(&bytes);
        let _ = smartvm_isa::validate::validate_code(&bytes);
    }
}
