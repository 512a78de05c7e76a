//! How each tracepoint's arguments travel: which capture slot (value, string, hash, payload)
//! the kernel program fills for each argument, the spec it is handed, and how a raw value is
//! typed back here. The kernel side (the spec) and the decoder (event.rs) both follow this.

use extractor_common::usdt::{capture, UsdtArgSpec, UsdtSpec, MAX_ARGS};
use extractor_common::{ArgKind, Tracepoint};

use crate::event::ArgValue;
use crate::usdt;

/// Which capture slot each argument of a tracepoint uses: strings and hashes are numbered in
/// argument order. The spec sent to the kernel and the decoder both follow this.
pub(crate) fn capture_plan(tracepoint: Tracepoint) -> impl Iterator<Item = (u8, u8)> {
    let (mut strings, mut hashes) = (0u8, 0u8);
    tracepoint.args().iter().map(move |kind| match kind {
        ArgKind::CStr => {
            strings += 1;
            (capture::CSTRING, strings - 1)
        }
        ArgKind::Hash32 => {
            hashes += 1;
            (capture::HASH, hashes - 1)
        }
        ArgKind::Bytes => (capture::PAYLOAD, 0),
        _ => (capture::VALUE, 0),
    })
}

pub(crate) fn kernel_spec(tracepoint: Tracepoint, args: &[usdt::ArgSpec]) -> UsdtSpec {
    let mut spec = UsdtSpec {
        args: [UsdtArgSpec::default(); MAX_ARGS],
        tracepoint: tracepoint as u16,
        arg_count: args.len().min(MAX_ARGS) as u8,
        _reserved: [0; 5],
    };
    let plan = capture_plan(tracepoint).chain(std::iter::repeat((capture::VALUE, 0)));
    for ((slot, arg), (capture, capture_slot)) in spec.args.iter_mut().zip(args).zip(plan) {
        *slot = UsdtArgSpec {
            capture,
            slot: capture_slot,
            ..arg.to_kernel()
        };
    }
    spec
}

/// Decodes `value` of argument `index` of `tracepoint` as the catalogue types it.
pub(crate) fn arg_value(tracepoint: Tracepoint, index: usize, raw: u64) -> ArgValue {
    match tracepoint.args().get(index) {
        Some(ArgKind::I64 | ArgKind::I32) => ArgValue::Signed(raw as i64),
        Some(ArgKind::Bool) => ArgValue::Bool(raw != 0),
        _ => ArgValue::Unsigned(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use extractor_common::usdt::{HASH_SLOTS, STRING_SLOTS};

    #[test]
    fn every_tracepoint_fits_the_capture_slots() {
        for tp in Tracepoint::ALL {
            let plan: Vec<_> = capture_plan(*tp).collect();
            let strings = plan.iter().filter(|(c, _)| *c == capture::CSTRING).count();
            let hashes = plan.iter().filter(|(c, _)| *c == capture::HASH).count();
            assert!(strings <= STRING_SLOTS && hashes <= HASH_SLOTS, "{tp}");
            assert!(tp.args().len() <= MAX_ARGS);
        }
    }

    #[test]
    fn spec_numbers_strings_and_hashes_in_argument_order() {
        let args: Vec<_> = [
            "8@%r13",
            "-4@%eax",
            "-8@112(%rbx)",
            "8@136(%rbx)",
            "8@%rdx",
            "-4@168(%rsp)",
            "-8@160(%rsp)",
            "1@%cl",
        ]
        .iter()
        .map(|s| usdt::ArgSpec::parse(s).unwrap())
        .collect();
        let spec = kernel_spec(Tracepoint::MempoolReplaced, &args);
        assert_eq!(spec.arg_count, 8);
        assert_eq!(
            (spec.args[0].capture, spec.args[0].slot),
            (capture::HASH, 0)
        );
        assert_eq!(
            (spec.args[4].capture, spec.args[4].slot),
            (capture::HASH, 1)
        );
        assert_eq!(spec.args[7].size, 1);
        let args: Vec<_> = [
            "-8@-968(%rbp)",
            "8@-928(%rbp)",
            "8@-640(%rbp)",
            "8@-336(%rbp)",
            "8@%rax",
            "8@%rdx",
        ]
        .iter()
        .map(|s| usdt::ArgSpec::parse(s).unwrap())
        .collect();
        let spec = kernel_spec(Tracepoint::NetInboundMessage, &args);
        let slots: Vec<_> = spec.args[..6].iter().map(|a| (a.capture, a.slot)).collect();
        assert_eq!(
            slots,
            [
                (0, 0),
                (capture::CSTRING, 0),
                (capture::CSTRING, 1),
                (capture::CSTRING, 2),
                (0, 0),
                (capture::PAYLOAD, 0)
            ]
        );
    }
}
