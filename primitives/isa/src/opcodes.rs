//! The opcode table: one row per instruction, the single source of truth for mnemonic, byte,
//! stack effect, immediate size and gas class. Everything else (decoder, validator, assembler,
//! interpreter dispatch, gas schedule, the CLI's `opcodes` listing) reads this table.
//!
//! Stack arguments are listed in push order: for `PUSH a  PUSH b  SUB` the result is `a - b`,
//! and a CNN instruction's first listed argument is the first value pushed.

/// How an instruction is charged; the VM's gas schedule gives each class its price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GasClass {
    /// Free: STOP.
    Zero,
    /// Stack shuffles and constants.
    Base,
    /// Cheap arithmetic and comparisons.
    VeryLow,
    /// Multiplication, division and shifts.
    Low,
    /// Unconditional jumps.
    Mid,
    /// Conditional jumps.
    High,
    /// Jump targets.
    JumpDest,
    /// Memory access: a static part plus a charge per byte of growth.
    Memory,
    /// One weight-element read from a stored block: a storage access each time.
    WeightRead,
    /// A CNN kernel: charged by multiply-accumulates and bytes touched.
    Kernel,
    /// A Buffer data movement: charged by bytes moved.
    Buffer,
}

/// One row of the opcode table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpInfo {
    /// The instruction.
    pub opcode: Opcode,
    /// Its byte in the bytecode.
    pub byte: u8,
    /// Assembly mnemonic.
    pub mnemonic: &'static str,
    /// Stack words popped.
    pub inputs: u8,
    /// Stack words pushed.
    pub outputs: u8,
    /// Bytes of immediate data following the opcode byte.
    pub immediate: u8,
    /// Pricing class.
    pub gas: GasClass,
    /// One line saying what it does and its stack arguments.
    pub summary: &'static str,
}

macro_rules! opcode_table {
    ($( $name:ident = $byte:literal, $in:literal -> $out:literal, imm $imm:literal, $gas:ident, $summary:literal; )*) => {
        /// A SmartVM instruction.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[allow(non_camel_case_types)]
        pub enum Opcode {
            $( #[doc = $summary] $name = $byte, )*
        }

        /// Every instruction, in byte order.
        pub const TABLE: &[OpInfo] = &[
            $( OpInfo {
                opcode: Opcode::$name,
                byte: $byte,
                mnemonic: stringify!($name),
                inputs: $in,
                outputs: $out,
                immediate: $imm,
                gas: GasClass::$gas,
                summary: $summary,
            }, )*
        ];
    };
}

opcode_table! {
    // ---- plain EVM-like base set ----
    STOP = 0x00, 0 -> 0, imm 0, Zero, "halt with the output set so far";
    ADD = 0x01, 2 -> 1, imm 0, VeryLow, "a b -> a + b (wrapping i64)";
    MUL = 0x02, 2 -> 1, imm 0, Low, "a b -> a * b (wrapping i64)";
    SUB = 0x03, 2 -> 1, imm 0, VeryLow, "a b -> a - b (wrapping i64)";
    DIV = 0x04, 2 -> 1, imm 0, Low, "a b -> a / b truncated toward zero; 0 when b is 0";
    MOD = 0x05, 2 -> 1, imm 0, Low, "a b -> a % b with the sign of a; 0 when b is 0";
    SHL = 0x06, 2 -> 1, imm 0, Low, "a n -> a << n; 0 when n is outside 0..64";
    SAR = 0x07, 2 -> 1, imm 0, Low, "a n -> a >> n arithmetic; n clamped to 0..=63";
    MIN = 0x08, 2 -> 1, imm 0, VeryLow, "a b -> min(a, b)";
    MAX = 0x09, 2 -> 1, imm 0, VeryLow, "a b -> max(a, b)";
    LT = 0x10, 2 -> 1, imm 0, VeryLow, "a b -> 1 if a < b else 0";
    GT = 0x11, 2 -> 1, imm 0, VeryLow, "a b -> 1 if a > b else 0";
    EQ = 0x12, 2 -> 1, imm 0, VeryLow, "a b -> 1 if a == b else 0";
    ISZERO = 0x13, 1 -> 1, imm 0, VeryLow, "a -> 1 if a == 0 else 0";
    AND = 0x14, 2 -> 1, imm 0, VeryLow, "a b -> a & b";
    OR = 0x15, 2 -> 1, imm 0, VeryLow, "a b -> a | b";
    XOR = 0x16, 2 -> 1, imm 0, VeryLow, "a b -> a ^ b";
    NOT = 0x17, 1 -> 1, imm 0, VeryLow, "a -> !a";
    // ---- CNN-oriented instructions: the paper's Table 1, bytes 0x21..=0x3a ----
    CONV_SING = 0x21, 6 -> 0, imm 0, Kernel, "k stride pad dilation wblock qblock: depthwise conv, one kernel per channel";
    CONV_MUL = 0x22, 8 -> 0, imm 0, Kernel, "out_c k stride pad dilation groups wblock qblock: multi-channel (grouped) 2-D conv";
    CONV_3D = 0x23, 8 -> 0, imm 0, Kernel, "out_c k stride pad dilation groups wblock qblock: 3-D conv over C×D×H×W";
    CONV_TPD = 0x24, 8 -> 0, imm 0, Kernel, "out_c k stride pad out_pad groups wblock qblock: transposed 2-D conv";
    POOL_MAX = 0x25, 3 -> 0, imm 0, Kernel, "k stride pad: max pooling, floor output size";
    POOL_AVG = 0x26, 3 -> 0, imm 0, Kernel, "k stride pad: average pooling over valid cells, rounded half up";
    POOL_OL = 0x27, 3 -> 0, imm 0, Kernel, "k stride pad: overlapping max pooling, ceil output size";
    FULL_CON = 0x28, 3 -> 0, imm 0, Kernel, "out_n wblock qblock: fully connected layer over the flattened frame";
    MAT_MUL = 0x29, 1 -> 0, imm 0, Kernel, "qblock: frames A (H×W = M×K) and top B (K×N) -> A·B (M×N)";
    ACT_SM0 = 0x2a, 1 -> 0, imm 0, Kernel, "qblock: softmax over channels with an exp table, output scale 1/256";
    ACT_SM1 = 0x2b, 1 -> 0, imm 0, Kernel, "lut: sigmoid through a 256-entry table";
    ACT_RL = 0x2c, 1 -> 0, imm 0, Kernel, "zero_point: ReLU, max(x, zero_point)";
    ACT_TANH = 0x2d, 1 -> 0, imm 0, Kernel, "lut: tanh through a 256-entry table";
    BUF_SCL0 = 0x2e, 1 -> 0, imm 0, Buffer, "times: multiply the top frame, saturating";
    BUF_SCL1 = 0x2f, 1 -> 0, imm 0, Buffer, "times: divide the top frame, rounding half up";
    BUF_BIAS = 0x30, 1 -> 0, imm 0, Buffer, "block: add a per-channel int8 bias, saturating";
    MTOB = 0x31, 2 -> 0, imm 0, Buffer, "mem_off len: push Memory bytes as a new flat frame";
    BTOM = 0x32, 1 -> 0, imm 0, Buffer, "mem_off: pop the top frame into Memory";
    BTOS0 = 0x33, 1 -> 1, imm 0, Buffer, "offset: push one element of the top frame onto the Stack";
    BTOS1 = 0x34, 2 -> 0, imm 0, Buffer, "offset len: set the program output from the top frame";
    BUF_CLS = 0x35, 1 -> 0, imm 0, Buffer, "count: discard the top count frames";
    BUF_FIL = 0x36, 1 -> 0, imm 0, Buffer, "value: fill the top frame with value";
    BUF_INIT = 0x37, 1 -> 0, imm 0, Buffer, "limit: empty the Buffer and cap it at limit bytes";
    BUF_ALLO = 0x38, 1 -> 0, imm 0, Buffer, "bytes: push a zeroed flat frame";
    BUF_FREE = 0x39, 1 -> 0, imm 0, Buffer, "bytes: release bytes from the end of the top frame";
    BUF_COPY = 0x3a, 1 -> 0, imm 0, Buffer, "depth: push a copy of the frame depth below the top";
    // ---- extensions for the evaluation networks ----
    ADD_RQ = 0x3b, 1 -> 0, imm 0, Kernel, "qblock: residual add of the top two frames with requantization";
    MUL_RQ = 0x3c, 1 -> 0, imm 0, Kernel, "qblock: element-wise product of the top two frames with requantization";
    POOL_GAVG = 0x3d, 0 -> 0, imm 0, Kernel, "global average pooling to C×1×1×1";
    ACT_LUT = 0x3e, 1 -> 0, imm 0, Kernel, "lut: any element-wise function through a 256-entry table";
    BUF_SHAPE = 0x3f, 4 -> 0, imm 0, Buffer, "c d h w: reshape the top frame (same element count)";
    BUF_SWAP = 0x40, 1 -> 0, imm 0, Buffer, "depth: swap the top frame with the frame depth below it";
    BUF_SLICE = 0x41, 2 -> 0, imm 0, Buffer, "offset len: push a flat copy of part of the top frame";
    BUF_CAT = 0x42, 1 -> 0, imm 0, Buffer, "count: join the top count frames into one flat frame";
    ARGMAX = 0x43, 0 -> 1, imm 0, Buffer, "push the index of the first largest element of the top frame";
    ACT_CLIP = 0x44, 2 -> 0, imm 0, Kernel, "min max: clamp the top frame (ReLU6 and friends)";
    // ---- memory, weights, control ----
    POP = 0x50, 1 -> 0, imm 0, Base, "a ->";
    MLOAD8 = 0x51, 1 -> 1, imm 0, Memory, "addr -> sign-extended int8 at addr";
    MSTORE8 = 0x52, 2 -> 0, imm 0, Memory, "addr value: store the low byte of value";
    MLOAD32 = 0x53, 1 -> 1, imm 0, Memory, "addr -> sign-extended little-endian int32";
    MSTORE32 = 0x54, 2 -> 0, imm 0, Memory, "addr value: store the low 32 bits little-endian";
    MLOAD64 = 0x55, 1 -> 1, imm 0, Memory, "addr -> little-endian int64";
    MSTORE64 = 0x56, 2 -> 0, imm 0, Memory, "addr value: store 64 bits little-endian";
    JUMP = 0x57, 1 -> 0, imm 0, Mid, "dest: continue at dest, which must be a JUMPDEST";
    JUMPI = 0x58, 2 -> 0, imm 0, High, "dest cond: jump to dest when cond is not 0";
    WLOAD8 = 0x59, 2 -> 1, imm 0, WeightRead, "block index -> sign-extended int8 weight element";
    WLOAD32 = 0x5a, 2 -> 1, imm 0, WeightRead, "block byte_offset -> sign-extended little-endian int32";
    JUMPDEST = 0x5b, 0 -> 0, imm 0, JumpDest, "mark a valid jump target";
    MSIZE = 0x5c, 0 -> 1, imm 0, Base, "-> bytes of Memory in use";
    PUSH1 = 0x60, 0 -> 1, imm 1, VeryLow, "-> sign-extended 1-byte immediate";
    PUSH2 = 0x61, 0 -> 1, imm 2, VeryLow, "-> sign-extended 2-byte little-endian immediate";
    PUSH4 = 0x62, 0 -> 1, imm 4, VeryLow, "-> sign-extended 4-byte little-endian immediate";
    PUSH8 = 0x63, 0 -> 1, imm 8, VeryLow, "-> 8-byte little-endian immediate";
    DUP1 = 0x80, 1 -> 2, imm 0, VeryLow, "duplicate the 1st stack word";
    DUP2 = 0x81, 2 -> 3, imm 0, VeryLow, "duplicate the 2nd stack word";
    DUP3 = 0x82, 3 -> 4, imm 0, VeryLow, "duplicate the 3rd stack word";
    DUP4 = 0x83, 4 -> 5, imm 0, VeryLow, "duplicate the 4th stack word";
    DUP5 = 0x84, 5 -> 6, imm 0, VeryLow, "duplicate the 5th stack word";
    DUP6 = 0x85, 6 -> 7, imm 0, VeryLow, "duplicate the 6th stack word";
    DUP7 = 0x86, 7 -> 8, imm 0, VeryLow, "duplicate the 7th stack word";
    DUP8 = 0x87, 8 -> 9, imm 0, VeryLow, "duplicate the 8th stack word";
    DUP9 = 0x88, 9 -> 10, imm 0, VeryLow, "duplicate the 9th stack word";
    DUP10 = 0x89, 10 -> 11, imm 0, VeryLow, "duplicate the 10th stack word";
    DUP11 = 0x8a, 11 -> 12, imm 0, VeryLow, "duplicate the 11th stack word";
    DUP12 = 0x8b, 12 -> 13, imm 0, VeryLow, "duplicate the 12th stack word";
    DUP13 = 0x8c, 13 -> 14, imm 0, VeryLow, "duplicate the 13th stack word";
    DUP14 = 0x8d, 14 -> 15, imm 0, VeryLow, "duplicate the 14th stack word";
    DUP15 = 0x8e, 15 -> 16, imm 0, VeryLow, "duplicate the 15th stack word";
    DUP16 = 0x8f, 16 -> 17, imm 0, VeryLow, "duplicate the 16th stack word";
    SWAP1 = 0x90, 2 -> 2, imm 0, VeryLow, "swap the top with the 2nd stack word";
    SWAP2 = 0x91, 3 -> 3, imm 0, VeryLow, "swap the top with the 3rd stack word";
    SWAP3 = 0x92, 4 -> 4, imm 0, VeryLow, "swap the top with the 4th stack word";
    SWAP4 = 0x93, 5 -> 5, imm 0, VeryLow, "swap the top with the 5th stack word";
    SWAP5 = 0x94, 6 -> 6, imm 0, VeryLow, "swap the top with the 6th stack word";
    SWAP6 = 0x95, 7 -> 7, imm 0, VeryLow, "swap the top with the 7th stack word";
    SWAP7 = 0x96, 8 -> 8, imm 0, VeryLow, "swap the top with the 8th stack word";
    SWAP8 = 0x97, 9 -> 9, imm 0, VeryLow, "swap the top with the 9th stack word";
    SWAP9 = 0x98, 10 -> 10, imm 0, VeryLow, "swap the top with the 10th stack word";
    SWAP10 = 0x99, 11 -> 11, imm 0, VeryLow, "swap the top with the 11th stack word";
    SWAP11 = 0x9a, 12 -> 12, imm 0, VeryLow, "swap the top with the 12th stack word";
    SWAP12 = 0x9b, 13 -> 13, imm 0, VeryLow, "swap the top with the 13th stack word";
    SWAP13 = 0x9c, 14 -> 14, imm 0, VeryLow, "swap the top with the 14th stack word";
    SWAP14 = 0x9d, 15 -> 15, imm 0, VeryLow, "swap the top with the 15th stack word";
    SWAP15 = 0x9e, 16 -> 16, imm 0, VeryLow, "swap the top with the 16th stack word";
    SWAP16 = 0x9f, 17 -> 17, imm 0, VeryLow, "swap the top with the 17th stack word";
    RETURN = 0xf3, 2 -> 0, imm 0, Zero, "mem_off len: halt with Memory bytes as the output";
    REVERT = 0xfd, 2 -> 0, imm 0, Zero, "mem_off len: abort with Memory bytes as the reason";
    INVALID = 0xfe, 0 -> 0, imm 0, Zero, "always fails";
}

/// Byte -> row index in [`TABLE`], built at compile time so decoding is one array lookup.
const INDEX: [u8; 256] = {
    let mut index = [u8::MAX; 256];
    let mut row = 0;
    while row < TABLE.len() {
        index[TABLE[row].byte as usize] = row as u8;
        row += 1;
    }
    index
};

/// Byte -> instruction, so decoding in the interpreter's hot loop is a single load.
const DECODE: [Option<Opcode>; 256] = {
    let mut decode = [None; 256];
    let mut row = 0;
    while row < TABLE.len() {
        decode[TABLE[row].byte as usize] = Some(TABLE[row].opcode);
        row += 1;
    }
    decode
};

impl Opcode {
    /// The instruction with this byte, if any.
    #[inline(always)]
    pub fn from_byte(byte: u8) -> Option<Opcode> {
        DECODE[byte as usize]
    }

    /// This instruction's row in the table.
    #[inline]
    pub fn info(self) -> &'static OpInfo {
        &TABLE[INDEX[self as u8 as usize] as usize]
    }

    /// The instruction spelled `mnemonic` (case-insensitive).
    pub fn from_mnemonic(mnemonic: &str) -> Option<Opcode> {
        TABLE
            .iter()
            .find(|row| row.mnemonic.eq_ignore_ascii_case(mnemonic))
            .map(|row| row.opcode)
    }

    /// True for the CNN-oriented instructions and their extensions (0x21..=0x44).
    #[inline]
    pub fn is_cnn(self) -> bool {
        (0x21..=0x44).contains(&(self as u8))
    }

    /// True when the instruction ends a basic block without falling through.
    pub fn is_terminator(self) -> bool {
        matches!(
            self,
            Opcode::STOP | Opcode::JUMP | Opcode::RETURN | Opcode::REVERT | Opcode::INVALID
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_bytes_are_unique_sorted_and_indexed() {
        for pair in TABLE.windows(2) {
            assert!(
                pair[0].byte < pair[1].byte,
                "{} before {}",
                pair[0].mnemonic,
                pair[1].mnemonic
            );
        }
        for row in TABLE {
            assert_eq!(row.opcode as u8, row.byte);
            assert_eq!(Opcode::from_byte(row.byte), Some(row.opcode));
            assert_eq!(Opcode::from_mnemonic(row.mnemonic), Some(row.opcode));
            assert_eq!(row.opcode.info().mnemonic, row.mnemonic);
        }
    }

    #[test]
    fn paper_table_one_bytes_are_kept() {
        let paper = [
            ("CONV_SING", 0x21),
            ("CONV_MUL", 0x22),
            ("CONV_3D", 0x23),
            ("CONV_TPD", 0x24),
            ("POOL_MAX", 0x25),
            ("POOL_AVG", 0x26),
            ("POOL_OL", 0x27),
            ("FULL_CON", 0x28),
            ("MAT_MUL", 0x29),
            ("ACT_SM0", 0x2a),
            ("ACT_SM1", 0x2b),
            ("ACT_RL", 0x2c),
            ("ACT_TANH", 0x2d),
            ("BUF_SCL0", 0x2e),
            ("BUF_SCL1", 0x2f),
            ("BUF_BIAS", 0x30),
            ("MTOB", 0x31),
            ("BTOM", 0x32),
            ("BTOS0", 0x33),
            ("BTOS1", 0x34),
            ("BUF_CLS", 0x35),
            ("BUF_FIL", 0x36),
            ("BUF_INIT", 0x37),
            ("BUF_ALLO", 0x38),
            ("BUF_FREE", 0x39),
            ("BUF_COPY", 0x3a),
        ];
        assert_eq!(paper.len(), 26);
        for (name, byte) in paper {
            let op = Opcode::from_mnemonic(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(op as u8, byte, "{name}");
            assert!(op.is_cnn());
        }
    }

    #[test]
    fn unknown_bytes_decode_to_none() {
        let known = TABLE.len();
        let unknown = (0..=255u8)
            .filter(|b| Opcode::from_byte(*b).is_none())
            .count();
        assert_eq!(known + unknown, 256);
        assert_eq!(Opcode::from_byte(0xff), None);
    }
}
