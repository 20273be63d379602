//! The programs the VM benchmarks time, in the runtime's wasm (`make weights`). Public so that
//! the schedule fit (`smartvm fit-schedule`) and the runtime's price check run the very same
//! programs through the interpreter natively, to learn what work each was charged for.
//!
//! [`layers`] is one program per kernel class and shape: synthetic sweeps that separate the
//! cost terms (multiply-accumulates, inner loops, outputs, bytes), then every distinct layer of
//! the zoo models (LeNet-5, the LSTM, AlexNet, ResNet-18, MobileNetV2) at its real shape. Weights
//! are never zero (the kernels skip zero taps, so zeros would time a cheaper case than a user
//! can send).

use alloc::{format, string::String, vec, vec::Vec};

use smartvm_isa::{program::MAX_BLOCK_LEN, Opcode, Program, Shape};
use smartvm_kernels::{AddQuant, ChannelQuant, OutputRange, PairQuant};

/// Code looping `turns` times over six base instructions (JUMPDEST PUSH SUB PUSH DUP2 JUMPI).
pub fn base_loop(turns: u32) -> Program {
    use Opcode::*;
    let mut code = vec![PUSH4 as u8];
    code.extend_from_slice(&turns.to_le_bytes());
    code.extend_from_slice(&[
        JUMPDEST as u8,
        PUSH1 as u8,
        1,
        SUB as u8,
        PUSH1 as u8,
        5,
        DUP2 as u8,
        JUMPI as u8,
    ]);
    code.extend_from_slice(&[POP as u8, PUSH1 as u8, 0, PUSH1 as u8, 1, RETURN as u8]);
    Program {
        input: Shape::new(1, 1, 1, 1),
        output_len: 1,
        code,
        blocks: vec![],
    }
}

/// A fully-connected layer of `m` inputs and 64 outputs returning its outputs, with its two
/// weight blocks (int8 weights, then the per-channel requantization): `m` x 64
/// multiply-accumulates.
pub fn fc_layer(m: u32) -> (Program, Vec<Vec<u8>>) {
    use Opcode::*;
    let quant = ChannelQuant {
        input_zero: 0,
        output: OutputRange {
            zero: 0,
            lo: -128,
            hi: 127,
        },
        bias: vec![0; 64],
        mult: vec![1 << 30; 64],
        shift: vec![8; 64],
    };
    let blocks = vec![vec![3u8; (m * 64) as usize], quant.encode()];
    let m16 = (m as u16).to_le_bytes();
    let code = vec![
        PUSH1 as u8,
        0,
        PUSH2 as u8,
        m16[0],
        m16[1],
        MTOB as u8,
        PUSH1 as u8,
        64,
        PUSH1 as u8,
        0,
        PUSH1 as u8,
        1,
        FULL_CON as u8,
        PUSH1 as u8,
        0,
        PUSH1 as u8,
        64,
        BTOS1 as u8,
        STOP as u8,
    ];
    let program = Program {
        input: Shape::new(m, 1, 1, 1),
        output_len: 64,
        code,
        blocks: Program::manifest_of(&blocks),
    };
    (program, blocks)
}

/// One benchmarked instruction and its operand shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerOp {
    /// CONV_MUL over a `c x h x w` input.
    Conv {
        /// Input channels, height, width.
        input: [u32; 3],
        /// Output channels.
        out_c: u32,
        /// Square kernel size.
        k: u32,
        /// Stride.
        stride: u32,
        /// Padding.
        pad: u32,
        /// Groups (`c` for depthwise).
        groups: u32,
    },
    /// CONV_TPD over a `c x h x w` input.
    ConvTranspose {
        /// Input channels, height, width.
        input: [u32; 3],
        /// Output channels.
        out_c: u32,
        /// Square kernel size.
        k: u32,
        /// Stride.
        stride: u32,
    },
    /// POOL_MAX (or POOL_AVG when `average`) over a `c x h x w` input.
    Pool {
        /// Input channels, height, width.
        input: [u32; 3],
        /// Window.
        k: u32,
        /// Stride.
        stride: u32,
        /// Padding.
        pad: u32,
        /// Average rather than max.
        average: bool,
    },
    /// POOL_GAVG over a `c x h x w` input.
    GlobalPool {
        /// Input channels, height, width.
        input: [u32; 3],
    },
    /// FULL_CON.
    FullyConnected {
        /// Inputs.
        inputs: u32,
        /// Outputs.
        outputs: u32,
    },
    /// MAT_MUL of an `m x k` by a `k x n` frame.
    MatMul {
        /// Rows, inner dimension, columns.
        dims: [u32; 3],
    },
    /// ADD_RQ of two frames of `len` elements.
    Add {
        /// Elements.
        len: u32,
    },
    /// MUL_RQ of two frames of `len` elements.
    Mul {
        /// Elements.
        len: u32,
    },
    /// ACT_SM0 over `c` channels at `positions` positions.
    Softmax {
        /// Channels, positions.
        dims: [u32; 2],
    },
    /// ACT_LUT over `len` elements.
    Table {
        /// Elements.
        len: u32,
    },
    /// ACT_CLIP over `len` elements.
    Clip {
        /// Elements.
        len: u32,
    },
    /// BUF_SCL1 (divide, rounding) over `len` elements.
    Scale {
        /// Elements.
        len: u32,
    },
    /// BUF_COPY of a frame of `len` elements, then BUF_CAT of the two.
    Move {
        /// Elements.
        len: u32,
    },
    /// MTOB of `bytes` past the input: Memory grows by that much, then the copy is dropped.
    GrowMemory {
        /// Bytes of growth.
        bytes: u32,
    },
}

/// A benchmark entry: where its shape comes from, and the instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchLayer {
    /// Model and layer, or the sweep it belongs to.
    pub name: String,
    /// The instruction timed.
    pub op: LayerOp,
}

/// A benchmark program with its weight blocks and input.
pub struct BenchProgram {
    /// The program.
    pub program: Program,
    /// Its weight blocks, in manifest order.
    pub blocks: Vec<Vec<u8>>,
    /// Its input.
    pub input: Vec<i8>,
}

fn conv(input: [u32; 3], out_c: u32, k: u32, stride: u32, pad: u32, groups: u32) -> LayerOp {
    LayerOp::Conv {
        input,
        out_c,
        k,
        stride,
        pad,
        groups,
    }
}

fn pool(input: [u32; 3], k: u32, stride: u32, pad: u32, average: bool) -> LayerOp {
    LayerOp::Pool {
        input,
        k,
        stride,
        pad,
        average,
    }
}

fn fc(inputs: u32, outputs: u32) -> LayerOp {
    LayerOp::FullyConnected { inputs, outputs }
}

/// MobileNetV2's convolutions at 224 x 224: the stem, each inverted residual's expansion,
/// depthwise and projection, the last 1x1.
fn mobilenet_v2(out: &mut Vec<(String, LayerOp)>) {
    let mut push = |name: String, op| out.push((format!("mobilenetv2 {name}"), op));
    push("stem".into(), conv([3, 224, 224], 32, 3, 2, 1, 1));
    let (mut c, mut h) = (32u32, 112u32);
    for (t, c_out, n, s) in [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ] {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = c * t;
            if t != 1 {
                push(
                    format!("expand {c}->{hidden} @{h}"),
                    conv([c, h, h], hidden, 1, 1, 0, 1),
                );
            }
            push(
                format!("depthwise {hidden} @{h} s{stride}"),
                conv([hidden, h, h], hidden, 3, stride, 1, hidden),
            );
            h /= stride;
            push(
                format!("project {hidden}->{c_out} @{h}"),
                conv([hidden, h, h], c_out, 1, 1, 0, 1),
            );
            if stride == 1 && c == c_out {
                push(
                    format!("residual add {c_out} @{h}"),
                    LayerOp::Add { len: c_out * h * h },
                );
            }
            c = c_out;
        }
    }
    push("last 1x1".into(), conv([320, 7, 7], 1280, 1, 1, 0, 1));
    push(
        "global pool".into(),
        LayerOp::GlobalPool {
            input: [1280, 7, 7],
        },
    );
    push("classifier".into(), fc(1280, 1000));
}

/// ResNet-18's layers at 224 x 224.
fn resnet18(out: &mut Vec<(String, LayerOp)>) {
    let mut push = |name: &str, op| out.push((format!("resnet18 {name}"), op));
    push("conv1", conv([3, 224, 224], 64, 7, 2, 3, 1));
    push("maxpool", pool([64, 112, 112], 3, 2, 1, false));
    push("layer1 3x3", conv([64, 56, 56], 64, 3, 1, 1, 1));
    push("layer1 add", LayerOp::Add { len: 64 * 56 * 56 });
    for (c, h) in [(128u32, 28u32), (256, 14), (512, 7)] {
        let (c_in, h_in) = (c / 2, h * 2);
        let tag = |what: &str| format!("{c}@{h} {what}");
        push(&tag("3x3 s2"), conv([c_in, h_in, h_in], c, 3, 2, 1, 1));
        push(&tag("3x3"), conv([c, h, h], c, 3, 1, 1, 1));
        push(
            &tag("downsample 1x1 s2"),
            conv([c_in, h_in, h_in], c, 1, 2, 0, 1),
        );
        push(&tag("add"), LayerOp::Add { len: c * h * h });
    }
    push("global pool", LayerOp::GlobalPool { input: [512, 7, 7] });
    push("fc", fc(512, 1000));
}

/// AlexNet's layers (torchvision) at 224 x 224.
fn alexnet(out: &mut Vec<(String, LayerOp)>) {
    let mut push = |name: &str, op| out.push((format!("alexnet {name}"), op));
    push("conv1 11x11 s4", conv([3, 224, 224], 64, 11, 4, 2, 1));
    push("pool1", pool([64, 55, 55], 3, 2, 0, false));
    push("conv2 5x5", conv([64, 27, 27], 192, 5, 1, 2, 1));
    push("pool2", pool([192, 27, 27], 3, 2, 0, false));
    push("conv3", conv([192, 13, 13], 384, 3, 1, 1, 1));
    push("conv4", conv([384, 13, 13], 256, 3, 1, 1, 1));
    push("conv5", conv([256, 13, 13], 256, 3, 1, 1, 1));
    push("pool5", pool([256, 13, 13], 3, 2, 0, false));
    push("fc6", fc(9216, 4096));
    push("fc7", fc(4096, 4096));
    push("fc8", fc(4096, 1000));
}

/// LeNet-5 (the example and the Fashion-MNIST demo) and the LSTM (hidden 104, 28 inputs a step).
fn small_models(out: &mut Vec<(String, LayerOp)>) {
    let mut push = |name: &str, op| out.push((String::from(name), op));
    push("lenet5 conv1", conv([1, 32, 32], 6, 5, 1, 0, 1));
    push("lenet5 pool1", pool([6, 28, 28], 2, 2, 0, false));
    push("lenet5 conv2", conv([6, 14, 14], 16, 5, 1, 0, 1));
    push("lenet5 pool2", pool([16, 10, 10], 2, 2, 0, false));
    push("lenet5 conv3", conv([16, 5, 5], 120, 5, 1, 0, 1));
    push("lenet5 fc1", fc(120, 84));
    push("lenet5 fc2", fc(84, 10));
    push(
        "lenet5-fashion conv1 pad 2",
        conv([1, 28, 28], 6, 5, 1, 2, 1),
    );
    push("lstm input gates", fc(28, 416));
    push("lstm recurrent gates", fc(104, 416));
    push("lstm gate table", LayerOp::Table { len: 104 });
    push("lstm cell mul", LayerOp::Mul { len: 104 });
    push("lstm cell add", LayerOp::Add { len: 104 });
    push("lstm head", fc(104, 10));
}

/// Sweeps that separate the cost terms of each class: one quantity grows, the others stay.
fn sweeps(out: &mut Vec<(String, LayerOp)>) {
    let mut push = |name: String, op| out.push((format!("sweep {name}"), op));
    for w in [4u32, 8, 16, 32, 64, 128] {
        push(
            format!("conv3x3 32->32 width {w}"),
            conv([32, 16, w], 32, 3, 1, 1, 1),
        );
        push(
            format!("conv3x3 s2 32->32 width {w}"),
            conv([32, 16, 2 * w], 32, 3, 2, 1, 1),
        );
        push(
            format!("depthwise 64 width {w}"),
            conv([64, 16, w], 64, 3, 1, 1, 64),
        );
    }
    for c in [1u32, 8, 64, 256] {
        push(
            format!("conv1x1 {c}->64 @16"),
            conv([c, 16, 16], 64, 1, 1, 0, 1),
        );
    }
    push(
        "dilated grouped 5x5".into(),
        conv([16, 20, 20], 16, 5, 1, 4, 4),
    );
    for (c, h, k, s) in [(16u32, 8u32, 2u32, 2u32), (32, 14, 4, 2), (64, 7, 3, 1)] {
        push(
            format!("transposed {c}@{h} k{k} s{s}"),
            LayerOp::ConvTranspose {
                input: [c, h, h],
                out_c: c,
                k,
                stride: s,
            },
        );
    }
    for (k, s) in [(2u32, 2u32), (3, 1), (7, 1)] {
        push(
            format!("maxpool k{k} s{s}"),
            pool([32, 32, 32], k, s, 0, false),
        );
        push(
            format!("avgpool k{k} s{s}"),
            pool([32, 32, 32], k, s, 0, true),
        );
    }
    push(
        "global pool 64@32".into(),
        LayerOp::GlobalPool {
            input: [64, 32, 32],
        },
    );
    for (i, o) in [(16u32, 4096u32), (1024, 1024), (8192, 64)] {
        push(format!("fc {i}->{o}"), fc(i, o));
    }
    for dims in [[64u32, 64, 64], [8, 512, 8], [196, 64, 196]] {
        push(
            format!("matmul {}x{}x{}", dims[0], dims[1], dims[2]),
            LayerOp::MatMul { dims },
        );
    }
    for len in [1024u32, 65_536, 1 << 20] {
        push(format!("add {len}"), LayerOp::Add { len });
        push(format!("mul {len}"), LayerOp::Mul { len });
        push(format!("table {len}"), LayerOp::Table { len });
        push(format!("clip {len}"), LayerOp::Clip { len });
        push(format!("scale {len}"), LayerOp::Scale { len });
        push(format!("move {len}"), LayerOp::Move { len });
    }
    for bytes in [4096u32, 262_144, 3 << 20] {
        push(
            format!("memory growth {bytes}"),
            LayerOp::GrowMemory { bytes },
        );
    }
    for dims in [[10u32, 1], [1000, 1], [16, 4096]] {
        push(
            format!("softmax {}x{}", dims[0], dims[1]),
            LayerOp::Softmax { dims },
        );
    }
}

/// Every benchmarked layer, distinct shapes only, in a fixed order: the first and the last are
/// small, so the pallet's benchmark tests (which run the lowest and highest index) stay quick.
pub fn layers() -> Vec<BenchLayer> {
    let mut all = Vec::new();
    small_models(&mut all);
    sweeps(&mut all);
    resnet18(&mut all);
    alexnet(&mut all);
    mobilenet_v2(&mut all);
    let mut out: Vec<BenchLayer> = Vec::new();
    for (name, op) in all {
        if out.iter().all(|l| l.op != op) {
            out.push(BenchLayer { name, op });
        }
    }
    out.push(BenchLayer {
        name: "sweep fc 84->12 (small; last)".into(),
        op: fc(84, 12),
    });
    out
}

/// How many entries [`layers`] has (the benchmark's component range).
pub const LAYER_COUNT: u32 = 143;

/// Bytes of code that push `args` then run `op`.
fn emit(code: &mut Vec<u8>, args: &[u32], op: Opcode) {
    for a in args {
        code.push(Opcode::PUSH4 as u8);
        code.extend_from_slice(&a.to_le_bytes());
    }
    code.push(op as u8);
}

/// Non-zero int8 weights in a fixed pattern, in blocks of at most `MAX_BLOCK_LEN` (built a
/// block at a time: AlexNet's fc6 as one vector would pass the runtime's 32 MiB allocation cap).
fn weight_blocks(len: u64) -> Vec<Vec<u8>> {
    let block = u64::from(MAX_BLOCK_LEN);
    (0..len.div_ceil(block))
        .map(|b| {
            (b * block..len.min((b + 1) * block))
                .map(|i| {
                    let v = (i * 37 % 127) as i8 + 1;
                    (if i % 2 == 0 { v } else { -v }) as u8
                })
                .collect()
        })
        .collect()
}

fn channel_quant(channels: u32) -> Vec<u8> {
    ChannelQuant {
        input_zero: 3,
        output: OutputRange {
            zero: -5,
            lo: -128,
            hi: 127,
        },
        bias: vec![1000; channels as usize],
        mult: vec![1 << 30; channels as usize],
        shift: vec![12; channels as usize],
    }
    .encode()
}

fn pair_quant() -> Vec<u8> {
    PairQuant {
        a_zero: 2,
        b_zero: -3,
        output: OutputRange {
            zero: 1,
            lo: -128,
            hi: 127,
        },
        mult: 1 << 30,
        shift: 8,
    }
    .encode()
}

/// A program that loads its input as one frame shaped `c x 1 x h x w`, runs `body`, and returns
/// the first elements of the result.
fn program(
    input: [u32; 3],
    blocks: Vec<Vec<u8>>,
    body: impl FnOnce(&mut Vec<u8>),
    out_len: u32,
) -> BenchProgram {
    let [c, h, w] = input;
    let len = c * h * w;
    let mut code = Vec::new();
    emit(&mut code, &[0, len], Opcode::MTOB);
    emit(&mut code, &[c, 1, h, w], Opcode::BUF_SHAPE);
    body(&mut code);
    let output_len = out_len.clamp(1, 16);
    emit(&mut code, &[0, output_len], Opcode::BTOS1);
    code.push(Opcode::STOP as u8);
    BenchProgram {
        program: Program {
            input: Shape::new(c, 1, h, w),
            output_len,
            code,
            blocks: Program::manifest_of(&blocks),
        },
        blocks,
        input: (0..len).map(|i| (i * 29 % 251) as u8 as i8).collect(),
    }
}

/// The program, weights and input of one benchmark entry.
pub fn layer_program(op: &LayerOp) -> BenchProgram {
    use Opcode::*;
    match *op {
        LayerOp::Conv {
            input,
            out_c,
            k,
            stride,
            pad,
            groups,
        } => {
            let len = u64::from(out_c) * u64::from(input[0] / groups) * u64::from(k * k);
            let mut blocks = weight_blocks(len);
            let q = blocks.len() as u32;
            blocks.push(channel_quant(out_c));
            let out = |n: u32| (n + 2 * pad - k) / stride + 1;
            program(
                input,
                blocks,
                |code| emit(code, &[out_c, k, stride, pad, 1, groups, 0, q], CONV_MUL),
                out_c * out(input[1]) * out(input[2]),
            )
        }
        LayerOp::ConvTranspose {
            input,
            out_c,
            k,
            stride,
        } => {
            let len = u64::from(input[0]) * u64::from(out_c) * u64::from(k * k);
            let mut blocks = weight_blocks(len);
            let q = blocks.len() as u32;
            blocks.push(channel_quant(out_c));
            program(
                input,
                blocks,
                |code| emit(code, &[out_c, k, stride, 0, 0, 1, 0, q], CONV_TPD),
                16,
            )
        }
        LayerOp::Pool {
            input,
            k,
            stride,
            pad,
            average,
        } => {
            let op = if average { POOL_AVG } else { POOL_MAX };
            program(input, vec![], |code| emit(code, &[k, stride, pad], op), 16)
        }
        LayerOp::GlobalPool { input } => {
            program(input, vec![], |code| emit(code, &[], POOL_GAVG), input[0])
        }
        LayerOp::FullyConnected { inputs, outputs } => {
            let mut blocks = weight_blocks(u64::from(inputs) * u64::from(outputs));
            let q = blocks.len() as u32;
            blocks.push(channel_quant(outputs));
            program(
                [inputs, 1, 1],
                blocks,
                |code| emit(code, &[outputs, 0, q], FULL_CON),
                outputs,
            )
        }
        LayerOp::MatMul { dims: [m, k, n] } => {
            // The input holds A (m x k) then B (k x n); each becomes a frame.
            let (a, b) = (m * k, k * n);
            program(
                [1, 1, a + b],
                vec![pair_quant()],
                |code| {
                    emit(code, &[0, a], BUF_SLICE);
                    emit(code, &[1, 1, m, k], BUF_SHAPE);
                    emit(code, &[1], BUF_SWAP);
                    emit(code, &[a, b], BUF_SLICE);
                    emit(code, &[1, 1, k, n], BUF_SHAPE);
                    emit(code, &[1], BUF_SWAP);
                    emit(code, &[1], BUF_CLS);
                    emit(code, &[0], MAT_MUL);
                },
                16,
            )
        }
        LayerOp::Add { len } => {
            let q = AddQuant {
                a_zero: 2,
                b_zero: -3,
                output: OutputRange {
                    zero: 1,
                    lo: -128,
                    hi: 127,
                },
                a_mult: 1 << 29,
                b_mult: 1 << 29,
                shift: 4,
            };
            program(
                [1, 1, len],
                vec![q.encode()],
                |code| {
                    emit(code, &[0], BUF_COPY);
                    emit(code, &[0], ADD_RQ);
                },
                16,
            )
        }
        LayerOp::Mul { len } => program(
            [1, 1, len],
            vec![pair_quant()],
            |code| {
                emit(code, &[0], BUF_COPY);
                emit(code, &[0], MUL_RQ);
            },
            16,
        ),
        LayerOp::Softmax {
            dims: [c, positions],
        } => {
            let table: Vec<u8> = (0..256u32)
                .flat_map(|i| ((1u32 << 24) >> (i / 16)).to_le_bytes())
                .collect();
            program(
                [c, 1, positions],
                vec![table],
                |code| emit(code, &[0], ACT_SM0),
                c * positions,
            )
        }
        LayerOp::Table { len } => {
            let table: Vec<u8> = (0..=255u8).map(|i| i.wrapping_mul(7)).collect();
            program(
                [1, 1, len],
                vec![table],
                |code| emit(code, &[0], ACT_LUT),
                16,
            )
        }
        LayerOp::Clip { len } => {
            // Two's complement of -20 as PUSH4 sign-extends it.
            program(
                [1, 1, len],
                vec![],
                |code| emit(code, &[(-20i32) as u32, 90], ACT_CLIP),
                16,
            )
        }
        LayerOp::Scale { len } => {
            program([1, 1, len], vec![], |code| emit(code, &[3], BUF_SCL1), 16)
        }
        LayerOp::GrowMemory { bytes } => program(
            [1, 1, 64],
            vec![],
            |code| {
                emit(code, &[64, bytes], MTOB);
                emit(code, &[1], BUF_CLS);
            },
            16,
        ),
        LayerOp::Move { len } => program(
            [1, 1, len],
            vec![],
            |code| {
                emit(code, &[0], BUF_COPY);
                emit(code, &[2], BUF_CAT);
            },
            16,
        ),
    }
}
