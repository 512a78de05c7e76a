//! What the kernel must offer the extractor, checked before anything is loaded: on an older
//! kernel the verifier (or the attach) would fail with a dump nobody can act on, so the person
//! is told which feature is missing and which Linux release brought it.

use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{is_helper_supported, is_map_supported, BpfHelper};

/// A kernel feature the extractor needs, and the first Linux release that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub since: &'static str,
}

pub const RING_BUFFER: Feature = Feature {
    name: "BPF ring buffers (BPF_MAP_TYPE_RINGBUF)",
    since: "5.8",
};
pub const BPF_LOOP: Feature = Feature {
    name: "the bpf_loop helper",
    since: "5.17",
};
pub const PERF_LINK: Feature = Feature {
    name: "BPF links for perf events (BPF_LINK_CREATE on a uprobe)",
    since: "5.15",
};
pub const ATTACH_COOKIE: Feature = Feature {
    name: "BPF attach cookies (bpf_get_attach_cookie)",
    since: "5.15",
};

/// The oldest kernel with everything: the newest of the features' releases.
pub const MINIMUM_KERNEL: &str = "5.17";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("this kernel ({release}) lacks {}; the extractor needs Linux {MINIMUM_KERNEL} or newer", missing_list(.missing))]
pub struct MissingFeatures {
    pub release: String,
    pub missing: Vec<Feature>,
}

fn missing_list(missing: &[Feature]) -> String {
    missing
        .iter()
        .map(|f| format!("{} (Linux {})", f.name, f.since))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether each feature is there, as probed: `None` when probing itself failed (no
/// permission, say), which then does not count as missing — loading will say what is wrong.
pub fn probe() -> Vec<(Feature, Option<bool>)> {
    let ring_buffer = is_map_supported(MapType::RingBuf).ok();
    // Without the privilege to create maps, aya's own probes read as "absent": say nothing of
    // them then; loading will report the missing privilege.
    let known = |present: bool| ring_buffer.map(|_| present);
    let features = aya::features();
    vec![
        (RING_BUFFER, ring_buffer),
        (
            BPF_LOOP,
            is_helper_supported(ProgramType::KProbe, BpfHelper::BPF_FUNC_loop).ok(),
        ),
        (PERF_LINK, known(features.bpf_perf_link())),
        (ATTACH_COOKIE, known(features.bpf_cookie())),
    ]
}

/// One error naming every missing feature, or `Ok`.
pub fn require(probed: &[(Feature, Option<bool>)]) -> Result<(), MissingFeatures> {
    let missing: Vec<Feature> = probed
        .iter()
        .filter(|(_, present)| *present == Some(false))
        .map(|(feature, _)| *feature)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(MissingFeatures {
        release: release(),
        missing,
    })
}

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| format!("Linux {}", r.trim()))
        .unwrap_or_else(|_| "of unknown release".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_bpf_loop_is_told_so_with_the_release_that_has_it() {
        let error = require(&[
            (RING_BUFFER, Some(true)),
            (BPF_LOOP, Some(false)),
            (PERF_LINK, None),
        ])
        .unwrap_err();
        assert_eq!(error.missing, [BPF_LOOP]);
        let text = error.to_string();
        assert!(
            text.contains("lacks the bpf_loop helper (Linux 5.17)"),
            "{text}"
        );
        assert!(text.ends_with("needs Linux 5.17 or newer"), "{text}");
    }

    #[test]
    fn every_missing_feature_is_named_at_once() {
        let error =
            require(&[(RING_BUFFER, Some(false)), (ATTACH_COOKIE, Some(false))]).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(
                "BPF ring buffers (BPF_MAP_TYPE_RINGBUF) (Linux 5.8), BPF attach cookies"
            ),
            "{text}"
        );
    }

    #[test]
    fn this_kernel_has_everything() {
        // The machines this runs on (and CI) have Linux 6.x, as root.
        assert_eq!(require(&probe()), Ok(()));
    }
}
