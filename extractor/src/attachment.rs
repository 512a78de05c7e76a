//! The probes of one binary file (and, with `--pid`, one process), attached to the loaded
//! program. A tracer can hold several at once, all feeding its one ring: the old file of an
//! upgraded node while its process still runs beside the new file, or the next process of a
//! followed `--pid` before the exited one is let go — so that nothing falls between them.

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};

use aya::maps::{Array, MapData};
use extractor_common::usdt::{UsdtSpec, MAX_ATTACH_POINTS};
use extractor_common::Tracepoint;

use crate::plan::kernel_spec;
use crate::process::FileIdentity;
use crate::tracer::{TracerConfig, TracerError};
use crate::usdt::{self, UprobeLink, UprobePmu, UprobeTarget, UsdtProbe};

/// One attached probe location.
#[derive(Debug, Clone)]
pub struct AttachedProbe {
    pub tracepoint: Tracepoint,
    pub offset: u64,
    pub semaphore_offset: Option<u64>,
    /// See [`UsdtProbe::semaphore_page_shared`].
    pub semaphore_page_shared: bool,
}

/// The attach cookies (indexes into `USDT_SPECS`) not in use: a detached file's come back once
/// its links are closed, when no program can run with them any more.
#[derive(Debug, Clone)]
pub(crate) struct Cookies(Arc<Mutex<Vec<u32>>>);

impl Cookies {
    pub(crate) fn new() -> Cookies {
        Cookies(Arc::new(Mutex::new((0..MAX_ATTACH_POINTS).rev().collect())))
    }

    fn take(&self, count: usize) -> Result<Vec<u32>, TracerError> {
        let mut free = self.0.lock().expect("cookies");
        if free.len() < count {
            return Err(TracerError::TooManyLocations(
                count + (MAX_ATTACH_POINTS as usize - free.len()),
            ));
        }
        let at = free.len() - count;
        Ok(free.split_off(at))
    }

    fn give_back(&self, cookies: Vec<u32>) {
        self.0.lock().expect("cookies").extend(cookies);
    }
}

pub struct Attachment {
    // Dropped first: closing the links detaches the probes.
    links: Vec<UprobeLink>,
    cookies: Vec<u32>,
    pool: Cookies,
    /// The file attached, as it was at the path then.
    pub file: Option<FileIdentity>,
    /// The only process traced, if one was chosen.
    pub pid: Option<u32>,
    pub attached: Vec<AttachedProbe>,
    /// Selected tracepoints this file does not have (older Bitcoin Core, wallet disabled…).
    pub missing: Vec<Tracepoint>,
    /// Probes not attached because their argument specs could not be parsed or differ from
    /// the catalogue's signature, with the reason.
    pub unreadable: Vec<(Tracepoint, String)>,
}

impl Attachment {
    /// Attaches every selected tracepoint the file at `config.binary` has.
    pub(crate) fn new(
        config: &TracerConfig,
        program: BorrowedFd<'_>,
        pmu: UprobePmu,
        specs: &mut Array<MapData, UsdtSpec>,
        pool: &Cookies,
    ) -> Result<Attachment, TracerError> {
        let file = FileIdentity::of(&config.binary);
        let probes = usdt::read_probes(&config.binary)?;
        let selected: Vec<(Tracepoint, &UsdtProbe)> = probes
            .iter()
            .filter_map(|probe| {
                let tp = Tracepoint::from_provider_name(&probe.provider, &probe.name)?;
                config.tracepoints.contains(&tp).then_some((tp, probe))
            })
            .collect();
        let mut attachment = Attachment {
            links: Vec::new(),
            cookies: pool.take(selected.len())?,
            pool: pool.clone(),
            file,
            pid: config.pid,
            attached: Vec::new(),
            missing: Vec::new(),
            unreadable: Vec::new(),
        };
        let mut cookies = attachment.cookies.clone().into_iter();
        for (tracepoint, probe) in selected {
            let args = match &probe.args {
                Ok(args) => args,
                Err(e) => {
                    attachment.unreadable.push((tracepoint, e.to_string()));
                    continue;
                }
            };
            if let Err(mismatch) = usdt::signature::check(tracepoint, &probe.arg_specs, args) {
                attachment
                    .unreadable
                    .push((tracepoint, mismatch.to_string()));
                continue;
            }
            let cookie = cookies.next().expect("a cookie per selected probe");
            specs.set(cookie, kernel_spec(tracepoint, args), 0)?;
            let target = UprobeTarget {
                binary: &config.binary,
                offset: probe.offset,
                semaphore_offset: probe.semaphore_offset,
                pid: config.pid,
                cookie: cookie as u64,
            };
            attachment
                .links
                .push(usdt::attach_uprobe(pmu, program, &target)?);
            attachment.attached.push(AttachedProbe {
                tracepoint,
                offset: probe.offset,
                semaphore_offset: probe.semaphore_offset,
                semaphore_page_shared: probe.semaphore_page_shared,
            });
        }
        if attachment.attached.is_empty() && !attachment.unreadable.is_empty() {
            return Err(TracerError::NoneUsable {
                binary: config.binary.display().to_string(),
                reasons: attachment
                    .unreadable
                    .iter()
                    .map(|(_, reason)| reason.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  "),
            });
        }
        if attachment.attached.is_empty() {
            return Err(nothing_to_attach(config, &probes));
        }
        attachment.missing = config
            .tracepoints
            .iter()
            .copied()
            .filter(|tp| !attachment.attached.iter().any(|a| a.tracepoint == *tp))
            .collect();
        Ok(attachment)
    }
}

/// Dropping closes the links — blocking: the kernel waits for a grace period per probe, about
/// 0.1 s each, so drop it off the runtime's threads — then frees the cookies.
impl Drop for Attachment {
    fn drop(&mut self) {
        drop(std::mem::take(&mut self.links));
        self.pool.give_back(std::mem::take(&mut self.cookies));
    }
}

fn nothing_to_attach(config: &TracerConfig, probes: &[UsdtProbe]) -> TracerError {
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(",")
        }
    };
    TracerError::NothingToAttach {
        binary: config.binary.display().to_string(),
        selected: list(config.tracepoints.iter().map(|tp| tp.to_string()).collect()),
        found: list(
            probes
                .iter()
                .map(|p| format!("{}:{}", p.provider, p.name))
                .collect(),
        ),
    }
}
