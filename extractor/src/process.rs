//! Files and processes as the kernel knows them: which file is at a path now (an upgrade puts
//! a new one there while the old one still runs), and which processes run a given file.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A file by identity, not by name: a replaced binary has another inode (or device), while a
/// process started from the old one keeps running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
}

impl FileIdentity {
    /// The file at `path` now; `None` while there is none (mid-replacement).
    pub fn of(path: &Path) -> Option<FileIdentity> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }

    /// The processes running this file (their `/proc/PID/exe` is it, deleted or not), lowest
    /// pid first.
    pub fn processes(self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                FileIdentity::of(&Path::new("/proc").join(pid.to_string()).join("exe"))
                    == Some(self)
            })
            .collect();
        pids.sort_unstable();
        pids
    }
}

/// One process, told apart from a later one that reuses its pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInstance {
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`: clock ticks after boot.
    start_time: u64,
}

impl ProcessInstance {
    /// The process with this pid now; `None` if there is none.
    pub fn of(pid: u32) -> Option<ProcessInstance> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
        // A zombie (field 3 `Z`) has exited; only its parent has not reaped it yet.
        if matches!(fields.next()?, "Z" | "X") {
            return None;
        }
        let start_time = fields.nth(18)?.parse().ok()?;
        Some(ProcessInstance { pid, start_time })
    }

    /// A process known to be gone (never [`ProcessInstance::is_running`]).
    pub fn gone(pid: u32) -> ProcessInstance {
        ProcessInstance {
            pid,
            start_time: u64::MAX,
        }
    }

    /// When it started (clock ticks after boot): a later process has a larger one.
    pub fn start_time(self) -> u64 {
        self.start_time
    }

    /// Whether this very process still runs (not exited, its pid not reused).
    pub fn is_running(self) -> bool {
        ProcessInstance::of(self.pid) == Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_its_own_binary() {
        let exe = std::env::current_exe().unwrap();
        let identity = FileIdentity::of(&exe).unwrap();
        assert!(identity.processes().contains(&std::process::id()));
        let me = ProcessInstance::of(std::process::id()).unwrap();
        assert!(me.is_running());
        assert!(ProcessInstance::of(u32::MAX).is_none());
    }

    #[test]
    fn an_exited_process_is_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let instance = ProcessInstance::of(child.id());
        child.wait().unwrap();
        if let Some(instance) = instance {
            assert!(!instance.is_running());
        }
    }
}
