//! Keeping the tracer on what the node runs. An upgrade puts a new file at the binary's path
//! while the old process still runs the old one (until the restart): both stay traced, into the
//! same ring, until no process runs the old file. With `--pid`, the process may exit: the next
//! process of the binary is followed, and it is said so — never tracing nothing in silence.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{FileIdentity, ProcessInstance};
use crate::tracer::{Tracer, TracerConfig};

/// How often the extractor looks at the binary's path and at the followed process.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub struct Watch {
    path: PathBuf,
    /// The file at the path when last attached.
    current: Option<FileIdentity>,
    /// With `--pid`: the process traced.
    followed: Option<ProcessInstance>,
    /// The followed process exited, no other runs the binary yet, and the log said so.
    waiting: bool,
}

impl Watch {
    pub fn new(config: &TracerConfig) -> Watch {
        Watch {
            path: config.binary.clone(),
            current: FileIdentity::of(&config.binary),
            followed: config.pid.and_then(ProcessInstance::of),
            waiting: false,
        }
    }

    pub fn check(&mut self, tracer: &mut Tracer, config: &TracerConfig) {
        if config.pid.is_some() {
            self.follow_process(tracer, config);
        } else {
            self.follow_file(tracer, config);
        }
    }

    /// Every process of the binary: a new file at the path is attached beside the old, and the
    /// old goes once nothing runs it.
    fn follow_file(&mut self, tracer: &mut Tracer, config: &TracerConfig) {
        let now = FileIdentity::of(&self.path);
        if now.is_some() && now != self.current {
            // Its probes are at new offsets: attached by path, it is the new file.
            match tracer.attach_also(config) {
                Ok(attachment) => {
                    tracing::info!(
                        binary = %self.path.display(),
                        locations = attachment.attached.len(),
                        "the binary was replaced: attached to the new file; the old one stays traced while a process runs it"
                    );
                    crate::cli::report_attach_problems(attachment);
                    self.current = now;
                }
                Err(error) => {
                    tracing::warn!(%error, "attaching to the replaced binary failed; will try again")
                }
            }
        }
        let current = self.current;
        let unused = |file: Option<FileIdentity>| {
            file.is_some_and(|f| Some(f) != current && f.processes().is_empty())
        };
        if tracer.attachments().iter().any(|a| unused(a.file)) {
            tracing::info!(
                binary = %self.path.display(),
                "no process runs the old binary any more: detaching from it"
            );
            tokio::spawn(tracer.detach_where(move |a| unused(a.file)));
        }
    }

    /// One process: when it exits, the binary's next process (of the file at the path now, or
    /// of one still running an old file).
    fn follow_process(&mut self, tracer: &mut Tracer, config: &TracerConfig) {
        let Some(followed) = self.followed else {
            // The --pid process was gone before the first look: as if it had just exited.
            self.followed = config.pid.map(ProcessInstance::gone);
            return;
        };
        if followed.is_running() {
            return;
        }
        let Some(next) = self.next_process(tracer) else {
            if !self.waiting {
                self.waiting = true;
                tracing::warn!(
                    pid = followed.pid,
                    binary = %self.path.display(),
                    "the traced process exited and no other process runs this binary: nothing is traced until one starts, which will be followed"
                );
            }
            return;
        };
        // The process's own file, deleted or not: attached through its /proc entry.
        let exe = Path::new("/proc").join(next.pid.to_string()).join("exe");
        let next_config = TracerConfig {
            binary: exe,
            pid: Some(next.pid),
            ..config.clone()
        };
        match tracer.attach_also(&next_config) {
            Ok(attachment) => {
                tracing::warn!(
                    exited = followed.pid,
                    pid = next.pid,
                    locations = attachment.attached.len(),
                    "the traced process exited: following the binary's next process"
                );
                let old = followed.pid;
                tokio::spawn(tracer.detach_where(move |a| a.pid == Some(old)));
                self.followed = Some(next);
                self.waiting = false;
            }
            Err(error) => {
                tracing::warn!(%error, pid = next.pid, "attaching to the next process failed; will try again")
            }
        }
    }

    /// The most recently started process running the binary (the file at the path now, or
    /// one already attached).
    fn next_process(&self, tracer: &Tracer) -> Option<ProcessInstance> {
        let mut files: Vec<FileIdentity> = FileIdentity::of(&self.path).into_iter().collect();
        files.extend(tracer.attachments().iter().filter_map(|a| a.file));
        files.sort_unstable_by_key(|f| (f.device, f.inode));
        files.dedup();
        files
            .into_iter()
            .flat_map(FileIdentity::processes)
            .filter_map(ProcessInstance::of)
            .max_by_key(|p| p.start_time())
    }
}
