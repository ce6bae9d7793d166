//! The bubblewrap command line: what a job sees of the machine.
//!
//! A job gets a read-only system (`/usr`, the `/bin`-style roots, a small
//! part of `/etc`), fresh `/proc`, `/dev` and `/tmp`, its own work dir at
//! `/work`, and nothing else of the host. Paths the provider hides (its
//! data dir, its key) are never bound, and are covered by an empty mount
//! where they lie under a tree that is bound.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use crate::runtime::RunSpec;

/// Where the job's work dir appears inside the sandbox.
pub(super) const WORK: &str = "/work";
/// Where the job's output dir appears inside the sandbox.
pub(super) const OUTPUT: &str = "/work/out";
/// `PATH` in the job unless the job sets its own.
pub(super) const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Top-level roots that are symlinks into `/usr` on merged-`/usr` systems
/// and directories on others; each is mirrored as it is on the host.
const ROOTS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The parts of `/etc` a job gets: name resolution, TLS roots, users and
/// groups, the dynamic linker's cache, `alternatives` (Debian's
/// `/usr/bin` symlinks point there), time zone, GPU vendor files. Not
/// `/etc/ssl/private`, `/etc/shadow` or anything else of the host's
/// configuration.
const ETC: &[&str] = &[
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "ssl/certs",
    "ssl/openssl.cnf",
    "pki/tls/certs",
    "pki/ca-trust",
    "resolv.conf",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "gai.conf",
    "passwd",
    "group",
    "localtime",
    "timezone",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "protocols",
    "services",
    "mime.types",
    "os-release",
    "OpenCL",
    "vulkan",
    "glvnd",
    "nvidia",
];

/// Environment variables the runtime sets and a job cannot override.
pub(crate) const RESERVED_ENV: &[&str] = &[
    "AGORA_OUTPUT",
    "AGORA_LEASE_ID",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
];

/// A host tree made visible in the sandbox: `src` on the host appears at
/// `dest` inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Bind {
    /// Host path.
    pub(super) src: PathBuf,
    /// Path inside the sandbox.
    pub(super) dest: PathBuf,
}

/// A bubblewrap command line under construction, with the binds it makes
/// (kept to place the hidden-path overlays and to look programs up).
#[derive(Debug, Default)]
pub(super) struct Mounts {
    /// bwrap's arguments so far.
    pub(super) args: Vec<OsString>,
    /// Every host tree bound, in order.
    pub(super) binds: Vec<Bind>,
}

impl Mounts {
    fn push(&mut self, args: &[&OsStr]) {
        self.args.extend(args.iter().map(|a| a.to_os_string()));
    }

    fn bind(&mut self, flag: &str, src: &Path, dest: &Path) {
        self.push(&[flag.as_ref(), src.as_os_str(), dest.as_os_str()]);
        self.binds.push(Bind {
            src: src.to_path_buf(),
            dest: dest.to_path_buf(),
        });
    }

    /// The read-only system: `/usr`, the roots as the host has them, the
    /// allowed part of `/etc`, then fresh `/proc`, `/dev` and `/tmp` (a
    /// tmpfs of `tmp_bytes`, unless 0).
    pub(super) fn system(&mut self, tmp_bytes: u64) {
        self.bind("--ro-bind", Path::new("/usr"), Path::new("/usr"));
        for root in ROOTS {
            let path = Path::new("/").join(root);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(&path) {
                    self.push(&["--symlink".as_ref(), target.as_os_str(), path.as_os_str()]);
                    // Host and sandbox resolve it alike.
                    self.binds.push(Bind {
                        src: path.clone(),
                        dest: path,
                    });
                }
            } else if meta.is_dir() {
                self.bind("--ro-bind", &path, &path);
            }
        }
        for entry in ETC {
            let path = Path::new("/etc").join(entry);
            if path.exists() {
                // `-try`: a symlink whose target vanished is skipped.
                self.bind("--ro-bind-try", &path, &path);
            }
        }
        self.push(&["--proc".as_ref(), "/proc".as_ref()]);
        self.push(&["--dev".as_ref(), "/dev".as_ref()]);
        if tmp_bytes > 0 {
            let size = OsString::from(tmp_bytes.to_string());
            self.push(&["--size".as_ref(), size.as_os_str()]);
        }
        self.push(&["--tmpfs".as_ref(), "/tmp".as_ref()]);
    }

    /// The NVIDIA device nodes that exist, and `/sys` read-only (the CUDA
    /// driver reads the PCI topology there).
    pub(super) fn gpus(&mut self) {
        let Ok(dir) = std::fs::read_dir("/dev") else {
            return;
        };
        let mut nodes: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("nvidia"))
            .map(|e| e.path())
            .collect();
        nodes.sort();
        for node in nodes {
            self.push(&["--dev-bind".as_ref(), node.as_os_str(), node.as_os_str()]);
        }
        self.bind("--ro-bind-try", Path::new("/sys"), Path::new("/sys"));
    }

    /// The job's work dir, read-write at [`WORK`].
    pub(super) fn work(&mut self, work_dir: &Path) {
        self.bind("--bind", work_dir, Path::new(WORK));
    }

    /// Covers every hidden path that lies under a bound tree: an empty
    /// tmpfs over a directory, `/dev/null` over a file. Must come after
    /// the binds.
    pub(super) fn hide(&mut self, hidden: &[PathBuf]) {
        for (dest, is_dir) in overlays(&self.binds, hidden) {
            if is_dir {
                self.push(&["--tmpfs".as_ref(), dest.as_os_str()]);
            } else {
                self.push(&["--ro-bind".as_ref(), "/dev/null".as_ref(), dest.as_os_str()]);
            }
        }
    }
}

/// Where each hidden path would show inside the sandbox, and whether it
/// is a directory: one entry per (hidden path, bind that contains it).
/// Hidden paths are compared as given; callers pass canonical paths.
pub(super) fn overlays(binds: &[Bind], hidden: &[PathBuf]) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    for path in hidden {
        for bind in binds {
            if let Ok(rest) = path.strip_prefix(&bind.src) {
                let dest = if rest.as_os_str().is_empty() {
                    bind.dest.clone()
                } else {
                    bind.dest.join(rest)
                };
                // A path that does not exist has nothing to show (and
                // bwrap could not mount over it in a read-only tree).
                let Ok(meta) = std::fs::metadata(path) else {
                    continue;
                };
                if !out.iter().any(|(d, _)| d == &dest) {
                    out.push((dest, meta.is_dir()));
                }
            }
        }
    }
    out
}

/// The job's environment: `PATH` and `HOME` defaults, then the job's own
/// variables, then ours, which win (`AGORA_OUTPUT`, `AGORA_LEASE_ID`,
/// `CUDA_VISIBLE_DEVICES`, `NVIDIA_VISIBLE_DEVICES`). Job variables in the
/// `AGORA_` namespace are dropped.
pub(super) fn job_env(spec: &RunSpec, home: &str, output: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_owned(), DEFAULT_PATH.to_owned());
    env.insert("HOME".to_owned(), home.to_owned());
    for (name, value) in &spec.env {
        if name.starts_with("AGORA_") || RESERVED_ENV.contains(&name.as_str()) {
            tracing::debug!(var = %name, "job env variable ignored: the runtime sets it");
            continue;
        }
        env.insert(name.clone(), value.clone());
    }
    let indices = spec
        .gpu_indices
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let nvidia = if spec.gpu_uuids.is_empty() {
        indices.clone()
    } else {
        spec.gpu_uuids.join(",")
    };
    env.insert("AGORA_OUTPUT".to_owned(), output.to_owned());
    env.insert("AGORA_LEASE_ID".to_owned(), spec.lease_id.clone());
    env.insert("CUDA_VISIBLE_DEVICES".to_owned(), indices);
    env.insert("NVIDIA_VISIBLE_DEVICES".to_owned(), nvidia);
    env
}

/// bwrap's namespace and session flags.
pub(super) fn isolation(network: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--die-with-parent",
        "--new-session",
        "--unshare-all",
        "--unshare-pid",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    if network {
        args.push("--share-net".into());
    }
    args.extend(["--cap-drop", "ALL"].iter().map(OsString::from));
    args
}

/// bwrap's full argument list for one job (everything after the bwrap
/// binary itself), with the binds it makes.
pub(super) fn job_args(
    spec: &RunSpec,
    work_dir: &Path,
    hidden: &[PathBuf],
    tmp_bytes: u64,
) -> (Vec<OsString>, Vec<Bind>) {
    let mut m = Mounts {
        args: isolation(spec.network),
        binds: Vec::new(),
    };
    m.system(tmp_bytes);
    if !spec.gpu_uuids.is_empty() {
        m.gpus();
    }
    m.work(work_dir);
    m.hide(hidden);
    m.push(&["--chdir".as_ref(), WORK.as_ref()]);
    m.push(&["--clearenv".as_ref()]);
    for (name, value) in job_env(spec, WORK, OUTPUT) {
        m.push(&["--setenv".as_ref(), name.as_ref(), value.as_ref()]);
    }
    m.push(&["--".as_ref()]);
    m.args.extend(spec.command.iter().map(OsString::from));
    (m.args, m.binds)
}

/// The probe: the same system layout (a sized `/tmp` included) running
/// `true`.
pub(super) fn probe_args() -> Vec<OsString> {
    let mut m = Mounts {
        args: isolation(false),
        binds: Vec::new(),
    };
    m.system(1 << 20);
    m.push(&["--clearenv".as_ref(), "--setenv".as_ref(), "PATH".as_ref()]);
    m.push(&[DEFAULT_PATH.as_ref(), "--".as_ref(), "true".as_ref()]);
    m.args
}

/// The host path behind a sandbox path, through the latest bind that
/// covers it.
fn host_path(binds: &[Bind], inside: &Path) -> Option<PathBuf> {
    binds.iter().rev().find_map(|b| {
        inside
            .strip_prefix(&b.dest)
            .ok()
            .map(|rest| b.src.join(rest))
    })
}

/// Whether `program` (argv\[0\]) can be found inside the sandbox: a path
/// is looked up as is (relative to [`WORK`]), a bare name along `path`.
/// Best effort: a program found here can still fail to execute (no exec
/// bit, a missing interpreter), which bwrap reports on stderr.
pub(super) fn program_exists(
    binds: &[Bind],
    hidden: &[PathBuf],
    program: &str,
    path: &str,
) -> bool {
    let visible = |inside: &Path| {
        host_path(binds, inside)
            .is_some_and(|host| host.is_file() && !hidden.iter().any(|h| host.starts_with(h)))
    };
    if program.contains('/') {
        return visible(&Path::new(WORK).join(program));
    }
    path.split(':').any(|dir| {
        let dir = if dir.is_empty() { WORK } else { dir };
        visible(&Path::new(WORK).join(dir).join(program))
    })
}

/// Whether `path` is plain and relative: non-empty, only normal
/// components (no `/` root, `.`, or `..`).
pub(crate) fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}
