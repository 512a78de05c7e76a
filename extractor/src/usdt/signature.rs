//! A probe's arguments against the catalogue's signature. Another Core version or a patched
//! build can pass other arguments under the same `provider:name`; decoding them as the
//! catalogue's would publish garbage, so such a probe is refused, with the difference named.

use extractor_common::Tracepoint;

use super::ArgSpec;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{tracepoint}: the binary's arguments ({found}) differ from the v30.0 signature ({expected}): {difference}; not attached, so that nothing is decoded into garbage")]
pub struct SignatureMismatch {
    pub tracepoint: Tracepoint,
    /// The note's argument specs, e.g. `-8@%rbx 8@%r12`.
    pub found: String,
    /// The catalogue's, as `name: size`, e.g. `peer_id: -8, addr: 8`.
    pub expected: String,
    pub difference: String,
}

/// `-8` for a signed 8-byte argument, `4` for an unsigned 4-byte one: the notes' own notation.
fn size_sign((size, signed): (u8, bool)) -> String {
    format!("{}{size}", if signed { "-" } else { "" })
}

/// Refuses `args` unless they are exactly as many as the catalogue's, each of its size and sign.
pub fn check(
    tracepoint: Tracepoint,
    arg_specs: &str,
    args: &[ArgSpec],
) -> Result<(), SignatureMismatch> {
    let catalogue: Vec<(u8, bool)> = tracepoint
        .args()
        .iter()
        .map(|k| k.size_and_sign())
        .collect();
    let names = tracepoint.arg_names();
    let mut differences = Vec::new();
    if args.len() != catalogue.len() {
        differences.push(format!(
            "{} arguments instead of {}",
            args.len(),
            catalogue.len()
        ));
    }
    for (index, (arg, expected)) in args.iter().zip(&catalogue).enumerate() {
        let found = (arg.size, arg.signed);
        if found != *expected {
            differences.push(format!(
                "argument {} ({}) is {} instead of {}",
                index + 1,
                names[index],
                size_sign(found),
                size_sign(*expected)
            ));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(SignatureMismatch {
        tracepoint,
        found: arg_specs.to_string(),
        expected: names
            .iter()
            .zip(&catalogue)
            .map(|(name, kind)| format!("{name}: {}", size_sign(*kind)))
            .collect::<Vec<_>>()
            .join(", "),
        difference: differences.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(specs: &str) -> Vec<ArgSpec> {
        specs
            .split_whitespace()
            .map(|s| ArgSpec::parse(s).unwrap())
            .collect()
    }

    const V30_INBOUND_MESSAGE: &str =
        "-8@-968(%rbp) 8@-928(%rbp) 8@-640(%rbp) 8@-336(%rbp) 8@%rax 8@%rdx";

    #[test]
    fn the_v30_signature_is_accepted() {
        let args = parse(V30_INBOUND_MESSAGE);
        assert_eq!(
            check(Tracepoint::NetInboundMessage, V30_INBOUND_MESSAGE, &args),
            Ok(())
        );
    }

    #[test]
    fn a_missing_argument_is_refused_and_named() {
        let specs = "-8@%rbx 8@%r12 8@%r13 8@%r14 8@%rax";
        let error = check(Tracepoint::NetInboundMessage, specs, &parse(specs)).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("net:inbound_message: "), "{text}");
        assert!(text.contains("5 arguments instead of 6"), "{text}");
        assert!(text.contains(specs), "{text}");
        assert!(text.contains("payload: 8"), "{text}");
    }

    #[test]
    fn a_narrower_or_unsigned_argument_is_refused_and_named() {
        // A build passing the peer id as an unsigned 32-bit value.
        let specs = "4@%ebx 8@%r12 8@%r13 8@%r14 8@%rax 8@%rdx";
        let error = check(Tracepoint::NetInboundMessage, specs, &parse(specs)).unwrap_err();
        assert_eq!(error.difference, "argument 1 (peer_id) is 4 instead of -8");
        // The block height as 8 bytes.
        let specs = "8@%rax -8@%rbx 8@%rcx -4@%edx -8@%rsi -8@%rdi";
        let error = check(Tracepoint::ValidationBlockConnected, specs, &parse(specs)).unwrap_err();
        assert_eq!(error.difference, "argument 2 (height) is -8 instead of -4");
    }
}
