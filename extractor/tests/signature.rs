//! A probe whose arguments differ from the catalogue's v30.0 signature (another Core version, a
//! patched build) is refused, naming the tracepoint and the difference; the others attach.

mod common;

use std::path::Path;
use std::process::Command;

use extractor::{Tracer, TracerConfig};
use extractor_common::Tracepoint;

/// A program with two USDT probes: `net:inbound_message` passing the peer id as a 32-bit int
/// (v30.0 passes an int64), and `mempool:added` exactly as v30.0 does.
const PATCHED_BUILD: &str = r#"
#include <sys/sdt.h>
int main(int argc, char **argv) {
    long long fee = argc;
    int narrow = argc;
    const char *text = argv[0];
    DTRACE_PROBE6(net, inbound_message, narrow, text, text, text, fee, text);
    DTRACE_PROBE3(mempool, added, text, narrow, fee);
    return 0;
}
"#;

fn compile(dir: &Path) -> std::path::PathBuf {
    let source = dir.join("patched.c");
    let binary = dir.join("patched-bitcoind");
    std::fs::write(&source, PATCHED_BUILD).unwrap();
    let status = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("running gcc");
    assert!(
        status.success(),
        "gcc failed (is systemtap-sdt-dev installed?)"
    );
    binary
}

#[tokio::test]
async fn a_probe_with_another_signature_is_refused_and_the_difference_named() {
    common::assert_root();
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path());
    let tracer = Tracer::attach(&TracerConfig::new(&binary)).expect("the matching probe attaches");
    let attached: Vec<Tracepoint> = tracer.attached().map(|a| a.tracepoint).collect();
    assert_eq!(attached, [Tracepoint::MempoolAdded]);
    assert_eq!(
        tracer.newest().unreadable.len(),
        1,
        "{:?}",
        tracer.newest().unreadable
    );
    let (refused, reason) = &tracer.newest().unreadable[0];
    assert_eq!(*refused, Tracepoint::NetInboundMessage);
    assert!(
        reason.contains("argument 1 (peer_id) is -4 instead of -8"),
        "{reason}"
    );
    assert!(reason.starts_with("net:inbound_message: "), "{reason}");
}
