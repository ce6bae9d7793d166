//! A job's resource limits, and the cgroup that holds them.
//!
//! What bounds a job, and how:
//! - **processes** (`pids.max`), **memory** (`memory.limit_in_bytes`
//!   with swap, or `memory.max` and `memory.swap.max = 0` on cgroup v2)
//!   and **CPU weight** (`cpu.shares`, or `cpu.weight` on v2): a cgroup
//!   per job, made under the node's own cgroup in each hierarchy. Pages
//!   of the job's `/tmp` tmpfs are charged to the cgroup of whoever
//!   writes them, so the memory limit covers `/tmp` too; the tmpfs also
//!   has a size of its own. The job enters its cgroup before bubblewrap
//!   is executed (a `write("0")` to `cgroup.procs` in the forked child),
//!   so nothing it forks is ever outside. At its end every process in the
//!   cgroup is killed, whatever session or group it moved to.
//! - **disk** (its work dir, outputs included): `RLIMIT_FSIZE` caps any
//!   one file, and a watchdog sums the work dir's allocated blocks every
//!   [`DISK_POLL`] and stops the job once they pass the limit (so it can
//!   overshoot by what it writes in one poll, never by a file larger than
//!   the limit).
//! - **file descriptors**: every descriptor but 0–2 is made close-on-exec
//!   in the child, so none that the node inherited reaches the job.
//!
//! Cgroups need a hierarchy the node may write to: cgroup v1 (each
//! controller mounted under `/sys/fs/cgroup/<controller>`) as root, or a
//! cgroup v2 directory delegated to the node (`runtime.cgroup`, e.g. a
//! systemd unit's with `Delegate=yes`) whose `cgroup.subtree_control`
//! enables `pids memory cpu`. Without one, the node warns, its offers say
//! `cgroup = false`, and only the disk and descriptor limits hold.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_protocol::run::SandboxLimit;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How often the disk watchdog sums a running job's work dir.
pub(crate) const DISK_POLL: Duration = Duration::from_secs(1);

/// How long, at most, the end of a job waits for its cgroup to empty.
const EMPTY_WAIT: Duration = Duration::from_secs(10);

/// One job's limits; a zero means "no limit" for that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most processes and threads alive at once.
    pub pids: u32,
    /// Most bytes of memory, its `/tmp` included.
    pub memory_bytes: u64,
    /// Size of its `/tmp` tmpfs.
    pub tmp_bytes: u64,
    /// Most bytes its work dir (outputs included) may hold.
    pub disk_bytes: u64,
    /// CPU weight on cgroup v2's scale (1–10000, 100 is a fair share).
    pub cpu_weight: u32,
}

/// Which cgroup layout the node found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// One hierarchy per controller; the parents the jobs' cgroups go in.
    V1 {
        /// `…/pids/<node's cgroup>`.
        pids: PathBuf,
        /// `…/memory/<node's cgroup>`.
        memory: PathBuf,
        /// `…/cpu/<node's cgroup>`.
        cpu: PathBuf,
    },
    /// The unified hierarchy; the delegated parent the jobs' cgroups go in.
    V2 {
        /// The parent, with `pids memory cpu` in its subtree control.
        parent: PathBuf,
    },
}

impl Cgroups {
    /// The layout of this machine (`/sys/fs/cgroup`, `/proc/self/cgroup`)
    /// once a job cgroup could be made in it; `Err` says why not.
    pub fn detect(configured: Option<&Path>) -> Result<Self, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let found = Self::detect_in(Path::new("/sys/fs/cgroup"), &own, configured)?;
        found.probe()?;
        Ok(found)
    }

    /// The layout under `root` for a process whose `/proc/self/cgroup`
    /// reads `own` (or `configured`, a v2 directory).
    pub(crate) fn detect_in(
        root: &Path,
        own: &str,
        configured: Option<&Path>,
    ) -> Result<Self, String> {
        if let Some(parent) = configured {
            return v2_parent(parent).map(|parent| Self::V2 { parent });
        }
        if root.join("pids/cgroup.procs").is_file() {
            let parent = |controller: &str| -> Result<PathBuf, String> {
                let path = own
                    .lines()
                    .filter_map(|line| {
                        let mut parts = line.splitn(3, ':');
                        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
                        names.split(',').any(|n| n == controller).then_some(path)
                    })
                    .next()
                    .ok_or_else(|| {
                        format!("/proc/self/cgroup names no cgroup v1 {controller} hierarchy")
                    })?;
                Ok(root.join(controller).join(path.trim_start_matches('/')))
            };
            return Ok(Self::V1 {
                pids: parent("pids")?,
                memory: parent("memory")?,
                cpu: parent("cpu")?,
            });
        }
        if root.join("cgroup.controllers").is_file() {
            let path = own
                .lines()
                .find_map(|line| line.strip_prefix("0::"))
                .ok_or_else(|| "/proc/self/cgroup has no cgroup v2 line".to_owned())?;
            let parent = root.join(path.trim_start_matches('/'));
            return v2_parent(&parent).map(|parent| Self::V2 { parent });
        }
        Err(format!(
            "no cgroup hierarchy under {} (neither v1 controllers nor v2)",
            root.display()
        ))
    }

    /// Which layout, for logs and offers.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::V1 { .. } => "cgroup v1",
            Self::V2 { .. } => "cgroup v2",
        }
    }

    /// Makes and removes a cgroup with limits, as a job's would be.
    fn probe(&self) -> Result<(), String> {
        let name = format!("agora-probe-{}", std::process::id());
        let limits = Limits {
            pids: 16,
            memory_bytes: 64 << 20,
            tmp_bytes: 0,
            disk_bytes: 0,
            cpu_weight: 100,
        };
        let group = self.create(&name, &limits)?;
        group.remove();
        Ok(())
    }

    /// A fresh cgroup named `name` with `limits` in every hierarchy. A
    /// leftover of the same name (a node killed mid-job) is emptied and
    /// replaced.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<JobCgroup, String> {
        let group = match self {
            Self::V1 { pids, memory, cpu } => JobCgroup {
                dirs: vec![pids.join(name), memory.join(name), cpu.join(name)],
                v2: false,
            },
            Self::V2 { parent } => JobCgroup {
                dirs: vec![parent.join(name)],
                v2: true,
            },
        };
        if group.dirs.iter().any(|d| d.exists()) {
            group.kill_all();
            group.rmdirs();
        }
        for dir in &group.dirs {
            std::fs::create_dir(dir)
                .map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
        }
        if let Err(e) = group.set(limits) {
            group.rmdirs();
            return Err(e);
        }
        Ok(group)
    }
}

/// `parent` once it is a cgroup v2 directory with `pids memory cpu`
/// enabled for its children (enabling them if it can).
fn v2_parent(parent: &Path) -> Result<PathBuf, String> {
    const NEEDED: [&str; 3] = ["pids", "memory", "cpu"];
    let control = parent.join("cgroup.subtree_control");
    let enabled = |text: &str| {
        NEEDED
            .iter()
            .all(|c| text.split_whitespace().any(|e| e == *c))
    };
    let now = std::fs::read_to_string(&control)
        .map_err(|e| format!("{} is not a cgroup v2 directory: {e}", parent.display()))?;
    if enabled(&now) {
        return Ok(parent.to_path_buf());
    }
    let _ = std::fs::write(&control, "+pids +memory +cpu");
    let after = std::fs::read_to_string(&control).unwrap_or_default();
    if enabled(&after) {
        return Ok(parent.to_path_buf());
    }
    Err(format!(
        "{} does not enable pids, memory and cpu for its children and cannot be made to \
         (a cgroup v2 directory holding processes cannot): run agorad in a delegated cgroup \
         (systemd: Delegate=yes) and set runtime.cgroup to a directory of it that holds no \
         process",
        control.display()
    ))
}

/// One job's cgroup: a directory per hierarchy (v1) or one (v2).
#[derive(Debug)]
pub struct JobCgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
}

impl JobCgroup {
    fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(dir.join(file), value)
            .map_err(|e| format!("cannot set {} to {value}: {e}", dir.join(file).display()))
    }

    fn set(&self, limits: &Limits) -> Result<(), String> {
        let max = |v: u64| {
            if v == 0 {
                "max".to_owned()
            } else {
                v.to_string()
            }
        };
        let weight = limits.cpu_weight.clamp(1, 10_000);
        if self.v2 {
            let dir = &self.dirs[0];
            Self::write(dir, "pids.max", &max(limits.pids.into()))?;
            Self::write(dir, "memory.max", &max(limits.memory_bytes))?;
            if dir.join("memory.swap.max").exists() {
                Self::write(dir, "memory.swap.max", "0")?;
            }
            Self::write(dir, "cpu.weight", &weight.to_string())?;
        } else {
            let (pids, memory, cpu) = (&self.dirs[0], &self.dirs[1], &self.dirs[2]);
            Self::write(pids, "pids.max", &max(limits.pids.into()))?;
            if limits.memory_bytes > 0 {
                Self::write(
                    memory,
                    "memory.limit_in_bytes",
                    &limits.memory_bytes.to_string(),
                )?;
                // With swap accounting, memory plus swap is bounded alike.
                if memory.join("memory.memsw.limit_in_bytes").exists() {
                    Self::write(
                        memory,
                        "memory.memsw.limit_in_bytes",
                        &limits.memory_bytes.to_string(),
                    )?;
                }
            }
            let shares = (u64::from(weight) * 1024 / 100).max(2);
            Self::write(cpu, "cpu.shares", &shares.to_string())?;
        }
        Ok(())
    }

    /// `cgroup.procs` of every hierarchy, open for writing: the child
    /// writes `0` to each before it executes, which moves it in.
    pub fn entries(&self) -> Result<Vec<OwnedFd>, String> {
        self.dirs
            .iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))
            })
            .collect()
    }

    /// The pids in the cgroup now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dirs[0].join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// SIGKILL to every process in the cgroup, until none is left (or
    /// [`EMPTY_WAIT`] passed); `false` when some outlived it.
    pub fn kill_all(&self) -> bool {
        let deadline = std::time::Instant::now() + EMPTY_WAIT;
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            for raw in pids {
                if let Ok(pid) = i32::try_from(raw) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Which limit the kernel enforced on the job, if one was: the OOM
    /// killer ran in its cgroup, or its pids limit refused a fork.
    pub fn hit(&self) -> Option<SandboxLimit> {
        let count = |dir: &Path, file: &str, key: &str| -> u64 {
            std::fs::read_to_string(dir.join(file))
                .unwrap_or_default()
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok()).flatten()
                })
                .unwrap_or(0)
        };
        let (pids, memory) = if self.v2 {
            (&self.dirs[0], &self.dirs[0])
        } else {
            (&self.dirs[0], &self.dirs[1])
        };
        let oom = if self.v2 {
            count(memory, "memory.events", "oom_kill")
        } else {
            count(memory, "memory.oom_control", "oom_kill")
        };
        if oom > 0 {
            return Some(SandboxLimit::Memory);
        }
        if count(pids, "pids.events", "max") > 0 {
            return Some(SandboxLimit::Pids);
        }
        None
    }

    fn rmdirs(&self) {
        for dir in &self.dirs {
            // A killed process leaves the cgroup a moment after it dies.
            for _ in 0..100 {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => break,
                }
            }
        }
    }

    /// Kills what is left in it and removes it.
    pub fn remove(self) {
        if !self.kill_all() {
            tracing::warn!(cgroup = %self.dirs[0].display(), "processes outlived SIGKILL in a job's cgroup");
        }
        self.rmdirs();
    }
}

/// Bytes allocated under `dir` (blocks, not apparent sizes, so a sparse
/// file counts what it holds), each entry counting at least one block;
/// symlinks are not followed.
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            total = total.saturating_add((meta.blocks() * 512).max(4096));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// Sets up the child between fork and exec: it enters its cgroup (one
/// `cgroup.procs` per hierarchy in `entries`), gets `RLIMIT_FSIZE` of
/// `max_file` bytes (unless 0), and every descriptor above 2 is made
/// close-on-exec, so the job inherits none of the node's.
#[allow(unsafe_code)]
pub(crate) fn confine(cmd: &mut tokio::process::Command, entries: Vec<OwnedFd>, max_file: u64) {
    let hook = move || -> std::io::Result<()> {
        for fd in &entries {
            nix::unistd::write(fd, b"0").map_err(std::io::Error::from)?;
        }
        if max_file > 0 {
            nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_FSIZE,
                max_file,
                max_file,
            )
            .map_err(std::io::Error::from)?;
        }
        cloexec_above_stdio();
        Ok(())
    };
    // SAFETY: `hook` runs in the forked child before exec. It allocates
    // nothing and takes no lock: it only makes system calls (write,
    // setrlimit, close_range or fcntl) on values moved in beforehand.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Marks every descriptor above 2 close-on-exec: `close_range` where the
/// kernel has it (5.11), else one `fcntl` per possible descriptor.
#[allow(unsafe_code)]
fn cloexec_above_stdio() {
    // SAFETY: plain system calls on integer arguments; no memory is
    // passed to the kernel.
    unsafe {
        let done = libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0;
        if !done {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 {
                limit.rlim_cur.min(1 << 20)
            } else {
                65_536
            };
            for fd in 3..top {
                #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
                libc::fcntl(fd as libc::c_int, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for f in files {
            let path = root.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        root
    }

    #[test]
    fn v1_parents_are_the_nodes_own_cgroup_in_each_hierarchy() {
        let root = tree(&["pids/cgroup.procs"]);
        let own = "9:name=systemd:/\n8:pids:/\n4:memory:/svc/abc\n2:cpu,cpuacct:/x\n0::/\n";
        let found = Cgroups::detect_in(root.path(), own, None).unwrap();
        assert_eq!(
            found,
            Cgroups::V1 {
                pids: root.path().join("pids/"),
                memory: root.path().join("memory/svc/abc"),
                cpu: root.path().join("cpu/x"),
            }
        );
        assert_eq!(found.kind(), "cgroup v1");
        let err = Cgroups::detect_in(root.path(), "8:pids:/\n", None).unwrap_err();
        assert!(err.contains("memory"), "{err}");
    }

    #[test]
    fn v2_needs_the_controllers_enabled_for_children() {
        let root = tree(&["cgroup.controllers"]);
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        let control = root.path().join("a/b/cgroup.subtree_control");
        std::fs::write(&control, "cpu pids memory io\n").unwrap();
        let found = Cgroups::detect_in(root.path(), "0::/a/b\n", None).unwrap();
        assert_eq!(
            found,
            Cgroups::V2 {
                parent: root.path().join("a/b")
            }
        );
        // A control file that reads without the controllers and refuses
        // the write that would enable them (even root cannot write it).
        std::fs::remove_file(&control).unwrap();
        std::os::unix::fs::symlink("/proc/version", &control).unwrap();
        let err = Cgroups::detect_in(root.path(), "0::/a/b\n", None).unwrap_err();
        assert!(err.contains("Delegate=yes"), "{err}");
        let err = Cgroups::detect_in(root.path(), "", Some(&root.path().join("nope"))).unwrap_err();
        assert!(err.contains("not a cgroup v2 directory"), "{err}");
    }

    #[test]
    fn a_machine_without_cgroups_says_so() {
        let root = tree(&[]);
        let err = Cgroups::detect_in(root.path(), "0::/\n", None).unwrap_err();
        assert!(err.contains("no cgroup hierarchy"), "{err}");
    }

    #[test]
    fn disk_usage_counts_blocks_and_entries() {
        let root = tree(&["a", "d/b", "d/e/c"]);
        let empty = disk_usage(root.path());
        // Five entries (three files, two dirs), each at least one block.
        assert!(empty >= 5 * 4096, "{empty}");
        std::fs::write(root.path().join("d/big"), vec![7u8; 1 << 20]).unwrap();
        let after = disk_usage(root.path());
        assert!(after >= empty + (1 << 20), "{empty} then {after}");
        // A sparse file holds next to nothing.
        let sparse = std::fs::File::create(root.path().join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        assert!(disk_usage(root.path()) < after + (1 << 20));
    }
}
