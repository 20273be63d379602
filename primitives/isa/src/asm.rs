//! Text assembler and disassembler.
//!
//! Source syntax, one item per line, `;` starts a comment:
//!
//! ```text
//! .input 1 1 32 32        ; input shape C D H W
//! .output 10              ; output elements
//! .block 150 <hash hex>   ; manifest entry (optional: the CLI can fill it from a weight pack)
//! .const CONV1_W 0        ; a named number usable as an operand
//! loop:                   ; a label; `PUSH @loop` pushes its byte offset
//!     PUSH 5              ; narrowest PUSH that holds the value; PUSH1/2/4/8 force a width
//!     CONV_MUL            ; any mnemonic from the opcode table
//! ```
//!
//! The disassembler writes explicit PUSH widths, so `assemble(disassemble(p)) == p` always.

use std::collections::HashMap;
use std::fmt::Write;

use crate::code::decode_instructions;
use crate::opcodes::Opcode;
use crate::program::{BlockInfo, Program, Shape};

/// An assembly error with the 1-based source line it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsmError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for AsmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for AsmError {}

enum Operand {
    Value(i64),
    Label(String),
}

struct Item {
    line: usize,
    opcode: Opcode,
    operand: Option<Operand>,
}

fn parse_int(text: &str) -> Option<i64> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(&hex.replace('_', ""), 16).ok()? as i128
    } else {
        body.replace('_', "").parse::<u64>().ok()? as i128
    };
    let value = if neg { -magnitude } else { magnitude };
    i64::try_from(value)
        .ok()
        .or_else(|| (!neg).then_some(magnitude as u64 as i64))
}

fn push_width(value: i64) -> Opcode {
    if i8::try_from(value).is_ok() {
        Opcode::PUSH1
    } else if i16::try_from(value).is_ok() {
        Opcode::PUSH2
    } else if i32::try_from(value).is_ok() {
        Opcode::PUSH4
    } else {
        Opcode::PUSH8
    }
}

fn fits(opcode: Opcode, value: i64) -> bool {
    match opcode {
        Opcode::PUSH1 => i8::try_from(value).is_ok(),
        Opcode::PUSH2 => i16::try_from(value).is_ok(),
        Opcode::PUSH4 => i32::try_from(value).is_ok(),
        _ => true,
    }
}

/// Assembles source text into a program container.
pub fn assemble(source: &str) -> Result<Program, AsmError> {
    let mut input = None;
    let mut output_len = None;
    let mut blocks = Vec::new();
    let mut consts: HashMap<String, i64> = HashMap::new();
    let mut labels: HashMap<String, u32> = HashMap::new();
    let mut items = Vec::new();
    let mut pc: u32 = 0;

    for (n, raw) in source.lines().enumerate() {
        let line = n + 1;
        let err = |message: String| AsmError { line, message };
        let text = raw.split(';').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let number = |w: &str| -> Result<i64, AsmError> {
            parse_int(w)
                .or_else(|| consts.get(w).copied())
                .ok_or_else(|| err(format!("not a number: {w}")))
        };
        let dim = |w: &str| -> Result<u32, AsmError> {
            u32::try_from(number(w)?).map_err(|_| err(format!("not a dimension: {w}")))
        };
        match words[0] {
            ".input" if words.len() == 5 => {
                input = Some(Shape::new(
                    dim(words[1])?,
                    dim(words[2])?,
                    dim(words[3])?,
                    dim(words[4])?,
                ));
            }
            ".output" if words.len() == 2 => output_len = Some(dim(words[1])?),
            ".block" if words.len() == 3 => {
                let len = dim(words[1])?;
                let hash = decode_hex32(words[2])
                    .ok_or_else(|| err("block hash must be 64 hex digits".into()))?;
                blocks.push(BlockInfo { len, hash });
            }
            ".const" if words.len() == 3 => {
                let value = number(words[2])?;
                if consts.insert(words[1].to_string(), value).is_some() {
                    return Err(err(format!("constant {} defined twice", words[1])));
                }
            }
            w if w.starts_with('.') => return Err(err(format!("bad directive: {text}"))),
            w if w.ends_with(':') && words.len() == 1 => {
                let name = &w[..w.len() - 1];
                if labels.insert(name.to_string(), pc).is_some() {
                    return Err(err(format!("label {name} defined twice")));
                }
            }
            mnemonic => {
                let is_generic_push = mnemonic.eq_ignore_ascii_case("PUSH");
                let operand = match words.get(1) {
                    None => None,
                    Some(w) if words.len() == 2 => Some(match w.strip_prefix('@') {
                        Some(label) => Operand::Label(label.to_string()),
                        None => Operand::Value(number(w)?),
                    }),
                    Some(_) => return Err(err("too many operands".into())),
                };
                let opcode = if is_generic_push {
                    match &operand {
                        Some(Operand::Value(v)) => push_width(*v),
                        Some(Operand::Label(_)) => Opcode::PUSH4,
                        None => return Err(err("PUSH needs an operand".into())),
                    }
                } else {
                    Opcode::from_mnemonic(mnemonic)
                        .ok_or_else(|| err(format!("unknown mnemonic {mnemonic}")))?
                };
                let takes_operand = opcode.info().immediate > 0;
                if takes_operand != operand.is_some() {
                    return Err(err(format!(
                        "{} {} an operand",
                        opcode.info().mnemonic,
                        if takes_operand { "needs" } else { "takes no" }
                    )));
                }
                if let Some(Operand::Value(v)) = &operand {
                    if !fits(opcode, *v) {
                        return Err(err(format!("{v} does not fit {}", opcode.info().mnemonic)));
                    }
                }
                pc = pc
                    .checked_add(1 + opcode.info().immediate as u32)
                    .ok_or_else(|| err("code too long".into()))?;
                items.push(Item {
                    line,
                    opcode,
                    operand,
                });
            }
        }
    }

    let mut code = Vec::with_capacity(pc as usize);
    for item in items {
        code.push(item.opcode as u8);
        let width = item.opcode.info().immediate as usize;
        if let Some(operand) = item.operand {
            let value = match operand {
                Operand::Value(v) => v,
                Operand::Label(name) => *labels.get(&name).ok_or_else(|| AsmError {
                    line: item.line,
                    message: format!("unknown label {name}"),
                })? as i64,
            };
            if !fits(item.opcode, value) {
                return Err(AsmError {
                    line: item.line,
                    message: format!("{value} does not fit"),
                });
            }
            code.extend_from_slice(&value.to_le_bytes()[..width]);
        }
    }
    let at_end = AsmError {
        line: source.lines().count(),
        message: String::new(),
    };
    Ok(Program {
        input: input.ok_or(AsmError {
            message: "missing .input".into(),
            ..at_end.clone()
        })?,
        output_len: output_len.ok_or(AsmError {
            message: "missing .output".into(),
            ..at_end
        })?,
        code,
        blocks,
    })
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Writes a program as assembly source that assembles back to the same bytes. Code that does
/// not decode is written up to the fault, followed by a comment naming it.
pub fn disassemble(program: &Program) -> String {
    let mut out = String::new();
    let s = program.input;
    let _ = writeln!(out, ".input {} {} {} {}", s.c, s.d, s.h, s.w);
    let _ = writeln!(out, ".output {}", program.output_len);
    for block in &program.blocks {
        let hex: String = block.hash.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(out, ".block {} {hex}", block.len);
    }
    for ins in decode_instructions(&program.code) {
        match ins {
            Ok(ins) => {
                let info = ins.opcode.info();
                if info.immediate > 0 {
                    let _ = writeln!(
                        out,
                        "    {} {:<12} ; {:#06x}",
                        info.mnemonic, ins.immediate, ins.pc
                    );
                } else {
                    let _ = writeln!(out, "    {:<18} ; {:#06x}", info.mnemonic, ins.pc);
                }
            }
            Err(e) => {
                let _ = writeln!(out, "    ; cannot decode: {e:?}");
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "
        .input 1 1 4 4
        .output 2
        .const W 3
        start:
            PUSH W
            PUSH 300
            PUSH -70000
            PUSH8 1
            PUSH @start
            POP POP
    ";

    #[test]
    fn assembles_widths_labels_and_constants() {
        let src = SAMPLE.replace("POP POP", "POP");
        let p = assemble(&src).unwrap();
        assert_eq!(p.input, Shape::new(1, 1, 4, 4));
        assert_eq!(&p.code[..2], &[Opcode::PUSH1 as u8, 3]);
        assert_eq!(&p.code[2..5], &[Opcode::PUSH2 as u8, 0x2c, 0x01]);
        assert_eq!(p.code[5], Opcode::PUSH4 as u8);
        assert_eq!(p.code[10], Opcode::PUSH8 as u8);
        assert_eq!(&p.code[19..24], &[Opcode::PUSH4 as u8, 0, 0, 0, 0]);
    }

    #[test]
    fn errors_name_their_line() {
        let e = assemble(SAMPLE).unwrap_err();
        assert_eq!(e.line, 11);
        let e = assemble(".input 1 1 1 1\n.output 1\nPUSH1 300").unwrap_err();
        assert!(e.message.contains("does not fit"), "{e}");
        let e = assemble(".input 1 1 1 1\n.output 1\nPUSH @nowhere").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(assemble(".output 1\nSTOP").is_err());
    }

    #[test]
    fn disassembly_round_trips() {
        let p = assemble(&SAMPLE.replace("POP POP", "POP")).unwrap();
        let text = disassemble(&p);
        assert_eq!(assemble(&text).unwrap(), p);
    }
}
