//! SystemTap argument specs (`-8@-968(%rbp)`, `8@%rax`, `4@%r14d`, `1@%dl`, `8@(%rbx)`,
//! `-4@$42`) parsed into the form the kernel program follows. x86_64 only.

use extractor_common::usdt::{location, UsdtArgSpec};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ArgSpecError {
    #[error("argument spec {0:?} has no SIZE@ prefix (expected e.g. -8@%rax)")]
    MissingSize(String),
    #[error("argument spec {0:?} has size {1}: only 1, 2, 4 and 8 bytes are valid")]
    BadSize(String, i64),
    #[error("argument spec {0:?} names register {1:?}, which is not an x86_64 register nodescope can read")]
    UnknownRegister(String, String),
    #[error("argument spec {0:?} has an operand nodescope cannot parse")]
    BadOperand(String),
}

/// Where an argument lives, with its size and signedness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgSpec {
    pub size: u8,
    pub signed: bool,
    pub location: ArgLocation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgLocation {
    Constant(i64),
    /// Byte offset of the register in `struct pt_regs`.
    Register(u16),
    Memory {
        register: u16,
        displacement: i64,
    },
}

impl ArgSpec {
    pub fn parse(spec: &str) -> Result<ArgSpec, ArgSpecError> {
        let (size, operand) = spec
            .split_once('@')
            .ok_or_else(|| ArgSpecError::MissingSize(spec.to_string()))?;
        let size: i64 = size
            .parse()
            .map_err(|_| ArgSpecError::MissingSize(spec.to_string()))?;
        if ![1, 2, 4, 8].contains(&size.abs()) {
            return Err(ArgSpecError::BadSize(spec.to_string(), size));
        }
        let register = |name: &str| {
            register_offset(name)
                .ok_or_else(|| ArgSpecError::UnknownRegister(spec.to_string(), name.to_string()))
        };
        let bad_operand = || ArgSpecError::BadOperand(spec.to_string());
        let location = if let Some(constant) = operand.strip_prefix('$') {
            ArgLocation::Constant(parse_int(constant).ok_or_else(bad_operand)?)
        } else if let Some(name) = operand.strip_prefix('%') {
            ArgLocation::Register(register(name)?)
        } else if let Some((displacement, rest)) = operand.split_once('(') {
            let name = rest
                .strip_prefix('%')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(bad_operand)?;
            let displacement = if displacement.is_empty() {
                0
            } else {
                parse_int(displacement).ok_or_else(bad_operand)?
            };
            ArgLocation::Memory {
                register: register(name)?,
                displacement,
            }
        } else {
            return Err(bad_operand());
        };
        Ok(ArgSpec {
            size: size.unsigned_abs() as u8,
            signed: size < 0,
            location,
        })
    }

    /// The kernel's form, without capture instructions.
    pub fn to_kernel(self) -> UsdtArgSpec {
        let (kind, register_offset, value_or_displacement) = match self.location {
            ArgLocation::Constant(value) => (location::CONSTANT, 0, value),
            ArgLocation::Register(register) => (location::REGISTER, register, 0),
            ArgLocation::Memory {
                register,
                displacement,
            } => (location::MEMORY, register, displacement),
        };
        UsdtArgSpec {
            value_or_displacement,
            register_offset,
            location: kind,
            size: self.size,
            signed: self.signed as u8,
            ..UsdtArgSpec::default()
        }
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let value = match digits.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    Some(if negative { -value } else { value })
}

/// Offset in x86_64 `struct pt_regs` of the 64-bit register holding `name`, for any of its
/// 64/32/16/8-bit names. The high-byte registers (`%ah` …) are not addressable this way.
fn register_offset(name: &str) -> Option<u16> {
    const REGISTERS: &[(u16, &[&str])] = &[
        (0, &["r15", "r15d", "r15w", "r15b"]),
        (8, &["r14", "r14d", "r14w", "r14b"]),
        (16, &["r13", "r13d", "r13w", "r13b"]),
        (24, &["r12", "r12d", "r12w", "r12b"]),
        (32, &["rbp", "ebp", "bp", "bpl"]),
        (40, &["rbx", "ebx", "bx", "bl"]),
        (48, &["r11", "r11d", "r11w", "r11b"]),
        (56, &["r10", "r10d", "r10w", "r10b"]),
        (64, &["r9", "r9d", "r9w", "r9b"]),
        (72, &["r8", "r8d", "r8w", "r8b"]),
        (80, &["rax", "eax", "ax", "al"]),
        (88, &["rcx", "ecx", "cx", "cl"]),
        (96, &["rdx", "edx", "dx", "dl"]),
        (104, &["rsi", "esi", "si", "sil"]),
        (112, &["rdi", "edi", "di", "dil"]),
        (128, &["rip", "eip"]),
        (152, &["rsp", "esp", "sp", "spl"]),
    ];
    REGISTERS
        .iter()
        .find(|(_, names)| names.contains(&name))
        .map(|(offset, _)| *offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> ArgSpec {
        ArgSpec::parse(spec).unwrap()
    }

    #[test]
    fn every_operand_form_of_bitcoind_v30() {
        // Taken from the v30.0 notes (TRACEPOINTS.md §2).
        assert_eq!(
            parse("-8@-968(%rbp)"),
            ArgSpec {
                size: 8,
                signed: true,
                location: ArgLocation::Memory {
                    register: 32,
                    displacement: -968
                }
            }
        );
        assert_eq!(parse("8@%rax").location, ArgLocation::Register(80));
        assert!(!parse("8@%rax").signed);
        assert_eq!(
            parse("4@%r14d"),
            ArgSpec {
                size: 4,
                signed: false,
                location: ArgLocation::Register(8)
            }
        );
        assert_eq!(
            parse("-4@%eax"),
            ArgSpec {
                size: 4,
                signed: true,
                location: ArgLocation::Register(80)
            }
        );
        assert_eq!(
            parse("1@%dl"),
            ArgSpec {
                size: 1,
                signed: false,
                location: ArgLocation::Register(96)
            }
        );
        assert_eq!(parse("1@%sil").location, ArgLocation::Register(104));
        assert_eq!(parse("1@%cl").location, ArgLocation::Register(88));
        assert_eq!(
            parse("8@(%rbx)").location,
            ArgLocation::Memory {
                register: 40,
                displacement: 0
            }
        );
        assert_eq!(
            parse("-8@272(%rbx)").location,
            ArgLocation::Memory {
                register: 40,
                displacement: 272
            }
        );
        assert_eq!(
            parse("-4@168(%rsp)").location,
            ArgLocation::Memory {
                register: 152,
                displacement: 168
            }
        );
        assert_eq!(parse("1@-1585(%rbp)").size, 1);
        assert_eq!(parse("-4@$42").location, ArgLocation::Constant(42));
        assert_eq!(parse("-4@$-1").location, ArgLocation::Constant(-1));
        assert_eq!(parse("8@$0x10").location, ArgLocation::Constant(16));
        assert_eq!(parse("2@%r9w").location, ArgLocation::Register(64));
    }

    #[test]
    fn kernel_form_keeps_location_size_and_sign() {
        let kernel = parse("-8@-968(%rbp)").to_kernel();
        assert_eq!(kernel.location, location::MEMORY);
        assert_eq!(kernel.register_offset, 32);
        assert_eq!(kernel.value_or_displacement, -968);
        assert_eq!((kernel.size, kernel.signed), (8, 1));
        let kernel = parse("-4@$-7").to_kernel();
        assert_eq!(
            (kernel.location, kernel.value_or_displacement),
            (location::CONSTANT, -7)
        );
    }

    #[test]
    fn bad_specs_are_named() {
        assert_eq!(
            ArgSpec::parse("%rax"),
            Err(ArgSpecError::MissingSize("%rax".into()))
        );
        assert_eq!(
            ArgSpec::parse("3@%rax"),
            Err(ArgSpecError::BadSize("3@%rax".into(), 3))
        );
        assert_eq!(
            ArgSpec::parse("1@%ah"),
            Err(ArgSpecError::UnknownRegister("1@%ah".into(), "ah".into()))
        );
        assert_eq!(
            ArgSpec::parse("8@12(%rax"),
            Err(ArgSpecError::BadOperand("8@12(%rax".into()))
        );
        assert_eq!(
            ArgSpec::parse("8@-x(%rax)"),
            Err(ArgSpecError::BadOperand("8@-x(%rax)".into()))
        );
        assert!(ArgSpec::parse("8@%xmm0").is_err());
    }
}
