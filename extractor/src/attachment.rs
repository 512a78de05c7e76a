//! The probes of one binary file (and, with `--pid`, one process), attached to the loaded
//! program. A tracer can hold several at once, all feeding its one ring: the old file of an
//! upgraded node while its process still runs beside the new file, or the next process of a
//! followed `--pid` before the exited one is let go — so that nothing falls between them.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use aya::maps::{Array, MapData};
use extractor_common::usdt::{UsdtSpec, MAX_ATTACH_POINTS};
use extractor_common::Tracepoint;

use crate::plan::kernel_spec;
use crate::process::FileIdentity;
use crate::tracer::{Programs, TracerConfig, TracerError};
use crate::usdt::multi::MultiTarget;
use crate::usdt::{self, UprobeLink, UprobeTarget, UsdtProbe};

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
    /// The one link of every probe, where the kernel has multi-uprobe links.
    multi_link: Option<OwnedFd>,
    /// Otherwise a perf link per probe.
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
        programs: &Programs,
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
            multi_link: None,
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
        let mut targets = Vec::new();
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
            targets.push(UprobeTarget {
                binary: &config.binary,
                offset: probe.offset,
                semaphore_offset: probe.semaphore_offset,
                pid: config.pid,
                cookie: cookie as u64,
            });
            attachment.attached.push(AttachedProbe {
                tracepoint,
                offset: probe.offset,
                semaphore_offset: probe.semaphore_offset,
                semaphore_page_shared: probe.semaphore_page_shared,
            });
        }
        attachment.link(programs, &targets)?;
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

impl Attachment {
    /// Whether its probes share one multi-uprobe link (detached at once) rather than a perf
    /// link each.
    pub fn multi_link(&self) -> bool {
        self.multi_link.is_some()
    }

    /// One multi-uprobe link for all `targets` where the kernel takes it, else a perf link each.
    fn link(
        &mut self,
        programs: &Programs,
        targets: &[UprobeTarget<'_>],
    ) -> Result<(), TracerError> {
        if targets.is_empty() {
            return Ok(());
        }
        if let Some(multi) = &programs.multi {
            let probes: Vec<MultiTarget> = targets
                .iter()
                .map(|t| MultiTarget {
                    offset: t.offset,
                    semaphore_offset: t.semaphore_offset.unwrap_or(0),
                    cookie: t.cookie,
                })
                .collect();
            match usdt::multi::attach(multi.as_fd(), targets[0].binary, &probes, targets[0].pid) {
                Ok(link) => {
                    self.multi_link = Some(link);
                    return Ok(());
                }
                Err(error) => {
                    tracing::debug!(%error, "multi-uprobe link refused; one perf link per probe")
                }
            }
        }
        for target in targets {
            self.links.push(usdt::attach_uprobe(
                programs.pmu,
                programs.perf.as_fd(),
                target,
            )?);
        }
        Ok(())
    }
}

/// Dropping closes the links — blocking: the kernel waits for a grace period per probe, about
/// 0.1 s each, so drop it off the runtime's threads — then frees the cookies.
impl Drop for Attachment {
    fn drop(&mut self) {
        drop(self.multi_link.take());
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
