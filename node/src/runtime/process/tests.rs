//! Tests of the process runtime. Those that run jobs in the sandbox need
//! a working bubblewrap (`apt-get install bubblewrap`): without one each
//! prints a `SKIPPED:` line and returns, except under `CI=true`, where
//! they fail saying so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::for_tests::sandbox_or_skip;
use super::output::{LogBudget, take_chunk};
use super::sandbox::{Bind, overlays};
use super::*;
use crate::runtime::{MAX_CHUNK, OutputFile};

/// The sandboxed runtime, or the test returns (having said why).
macro_rules! need {
    ($rt:expr) => {
        match $rt {
            Some(rt) => rt,
            None => return,
        }
    };
}

fn sandboxed(settings: RuntimeSection, hidden: Vec<PathBuf>) -> Option<ProcessRuntime> {
    if !sandbox_or_skip() {
        return None;
    }
    let rt = ProcessRuntime::new(settings, hidden)
        .unwrap_or_else(|e| panic!("bubblewrap works, yet ProcessRuntime::new said: {e}"));
    assert!(rt.sandboxed());
    Some(rt)
}

fn runtime() -> Option<ProcessRuntime> {
    sandboxed(RuntimeSection::default(), Vec::new())
}

fn unsandboxed() -> ProcessRuntime {
    let settings = RuntimeSection {
        bwrap: Some("/nonexistent/bwrap".into()),
        allow_unsandboxed: true,
        ..RuntimeSection::default()
    };
    let rt = ProcessRuntime::new(settings, Vec::new()).unwrap();
    assert!(!rt.sandboxed());
    rt
}

/// A lease id of its own for each run: it names the run's cgroup, and
/// tests run at once.
fn lease_id() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("00aa11bb{:08x}{n:08x}", std::process::id())
}

fn spec(dir: &Path, command: &[&str]) -> RunSpec {
    RunSpec {
        lease_id: lease_id(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        env: Vec::new(),
        inputs: Vec::new(),
        gpu_indices: Vec::new(),
        gpu_uuids: Vec::new(),
        network: false,
        time_limit: Duration::from_secs(120),
        work_dir: dir.join("job"),
    }
}

fn sh(dir: &Path, script: &str) -> RunSpec {
    spec(dir, &["sh", "-c", script])
}

/// What a run produced: its result and every event.
struct Ran {
    result: Result<Outcome, RuntimeError>,
    events: Vec<RunEvent>,
}

impl Ran {
    fn outcome(&self) -> &Outcome {
        match &self.result {
            Ok(outcome) => outcome,
            Err(e) => panic!("run failed: {e}"),
        }
    }

    fn text(&self, which: Stream) -> String {
        let mut bytes = Vec::new();
        for event in &self.events {
            if let RunEvent::Output { stream, data } = event
                && *stream == which
            {
                bytes.extend_from_slice(data);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn stdout(&self) -> String {
        self.text(Stream::Stdout)
    }

    fn stderr(&self) -> String {
        self.text(Stream::Stderr)
    }
}

/// Runs `spec`; cancels once stdout has shown `cancel_after`, if given.
async fn run_with(rt: &ProcessRuntime, spec: RunSpec, cancel_after: Option<&str>) -> Ran {
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let rt = rt.clone();
    let token = cancel.clone();
    let job = tokio::spawn(async move { rt.run(spec, tx, token).await });
    let mut events = Vec::new();
    let mut seen = String::new();
    while let Some(event) = rx.recv().await {
        if let (Some(marker), RunEvent::Output { stream, data }) = (cancel_after, &event)
            && *stream == Stream::Stdout
        {
            seen.push_str(&String::from_utf8_lossy(data));
            if seen.contains(marker) {
                cancel.cancel();
            }
        }
        events.push(event);
    }
    Ran {
        result: job.await.unwrap(),
        events,
    }
}

async fn run(rt: &ProcessRuntime, spec: RunSpec) -> Ran {
    run_with(rt, spec, None).await
}

/// Host pids of live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// A job whose background grandchild ignores SIGTERM and HUP, writes a
/// heartbeat, and would run forever; prints `started` once it runs.
fn stubborn_job(marker: &str, beat: &str) -> String {
    format!(
        ": {marker}; (trap '' TERM HUP; while :; do date +%s%N > {beat}; sleep 0.05; done) & \
         while [ ! -s {beat} ]; do sleep 0.05; done; echo started; wait"
    )
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn echo_inputs_and_outputs() {
    let dir = temp();
    let mut spec = sh(
        dir.path(),
        "echo one; echo two >&2; echo three; cat in/data.txt; \
         printf hello > \"$AGORA_OUTPUT/result.txt\"; mkdir -p \"$AGORA_OUTPUT/sub\"; \
         printf x > \"$AGORA_OUTPUT/sub/b\"; pwd",
    );
    spec.inputs = vec![("in/data.txt".to_owned(), b"input-content\n".to_vec())];
    let ran = run(&need!(runtime()), spec).await;
    let outcome = ran.outcome();
    assert_eq!(ran.events.first(), Some(&RunEvent::Started));
    assert_eq!(ran.stdout(), "one\nthree\ninput-content\n/work\n");
    assert_eq!(ran.stderr(), "two\n");
    assert_eq!(outcome.exit, Exit::Code(0));
    assert_eq!(outcome.outputs_note, None);
    assert_eq!(
        outcome.output_dir,
        dir.path().join("job/out").canonicalize().unwrap()
    );
    let expect = vec![
        OutputFile {
            path: "result.txt".to_owned(),
            size: 5,
            blake3: *blake3::hash(b"hello").as_bytes(),
        },
        OutputFile {
            path: "sub/b".to_owned(),
            size: 1,
            blake3: *blake3::hash(b"x").as_bytes(),
        },
    ];
    assert_eq!(outcome.outputs, expect);
}

#[tokio::test]
async fn exit_statuses() {
    let dir = temp();
    let rt = need!(runtime());
    let ran = run(&rt, sh(dir.path(), "echo bye; exit 3")).await;
    assert_eq!(ran.outcome().exit, Exit::Code(3));
    assert_eq!(ran.stdout(), "bye\n");

    let dir = temp();
    let ran = run(&rt, sh(dir.path(), "kill -TERM $$")).await;
    assert_eq!(ran.outcome().exit, Exit::Signal(15));
}

#[tokio::test]
async fn missing_program_is_a_start_error() {
    let dir = temp();
    let rt = need!(runtime());
    let ran = run(&rt, spec(dir.path(), &["no-such-program-agora"])).await;
    assert!(
        matches!(ran.result, Err(RuntimeError::Start(_))),
        "{:?}",
        ran.result.as_ref().err()
    );
    let ran = run(&rt, spec(dir.path(), &["./not-there.sh"])).await;
    assert!(matches!(ran.result, Err(RuntimeError::Start(_))));
    // An input the job runs by path is found.
    let dir = temp();
    let mut s = spec(dir.path(), &["sh", "./run.sh"]);
    s.inputs = vec![("run.sh".to_owned(), b"echo ran\n".to_vec())];
    assert_eq!(run(&rt, s).await.stdout(), "ran\n");
}

#[tokio::test]
async fn bad_input_path_is_refused() {
    let dir = temp();
    let mut s = sh(dir.path(), "true");
    s.inputs = vec![("../escape".to_owned(), b"x".to_vec())];
    let ran = run(&need!(runtime()), s).await;
    assert!(matches!(ran.result, Err(RuntimeError::Start(_))));
    assert!(!dir.path().join("escape").exists());
}

async fn assert_tree_killed(rt: &ProcessRuntime, time_limit: bool) {
    let dir = temp();
    let marker = format!("agora-test-marker-{}-{time_limit}", rt.sandboxed());
    let beat = if rt.sandboxed() {
        "/work/out/beat".to_owned()
    } else {
        "\"$AGORA_OUTPUT/beat\"".to_owned()
    };
    let mut s = sh(dir.path(), &stubborn_job(&marker, &beat));
    let ran = if time_limit {
        s.time_limit = Duration::from_secs(2);
        run(rt, s).await
    } else {
        run_with(rt, s, Some("started")).await
    };
    let expected = if time_limit {
        Exit::TimeLimit
    } else {
        Exit::Cancelled
    };
    assert_eq!(ran.outcome().exit, expected);
    assert_eq!(ran.stdout(), "started\n");
    // run() returns only once the tree is gone.
    assert_eq!(processes_with(&marker), Vec::<u32>::new());
    let beat = dir.path().join("job/out/beat");
    let before = std::fs::read(&beat).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        std::fs::read(&beat).unwrap(),
        before,
        "the heartbeat went on"
    );
}

#[tokio::test]
async fn time_limit_kills_the_tree() {
    assert_tree_killed(&need!(runtime()), true).await;
}

#[tokio::test]
async fn cancel_kills_the_tree() {
    assert_tree_killed(&need!(runtime()), false).await;
}

#[tokio::test]
async fn unsandboxed_cancel_kills_the_tree() {
    assert_tree_killed(&unsandboxed(), false).await;
}

#[tokio::test]
async fn background_processes_end_with_the_job() {
    let dir = temp();
    let marker = "agora-test-marker-leftover";
    let script = format!(": {marker}; (trap '' TERM HUP; while :; do sleep 0.2; done) & echo done");
    let ran = run(&need!(runtime()), sh(dir.path(), &script)).await;
    assert_eq!(ran.outcome().exit, Exit::Code(0));
    assert_eq!(ran.stdout(), "done\n");
    // The pid namespace is torn down with its first process; give the
    // kernel a moment to finish.
    for _ in 0..100 {
        if processes_with(marker).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(processes_with(marker), Vec::<u32>::new());
}

#[tokio::test]
async fn hidden_paths_stay_hidden() {
    let dir = temp();
    let secret = "agora-secret-key-material";
    // A data dir outside every bound tree: never bound at all.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("node.key"), secret).unwrap();
    // A data dir inside a bound tree (the job's own work dir here):
    // covered by an empty tmpfs; a key file there: covered by /dev/null.
    let work = dir.path().join("job");
    std::fs::create_dir_all(work.join("state")).unwrap();
    std::fs::write(work.join("state/node.key"), secret).unwrap();
    std::fs::write(work.join("wallet.key"), secret).unwrap();
    let rt = need!(sandboxed(
        RuntimeSection::default(),
        vec![data.clone(), work.join("state"), work.join("wallet.key")],
    ));

    let key = data.join("node.key");
    let ran = run(&rt, sh(dir.path(), &format!("cat {}", key.display()))).await;
    assert_ne!(ran.outcome().exit, Exit::Code(0));
    assert!(!ran.stdout().contains(secret) && !ran.stderr().contains(secret));

    let script = "cat /work/state/node.key; ls -A /work/state; cat /work/wallet.key; echo end";
    let ran = run(&rt, sh(dir.path(), script)).await;
    assert_eq!(ran.stdout(), "end\n");
    assert!(!ran.stderr().contains(secret));
    assert_eq!(
        std::fs::read_to_string(work.join("state/node.key")).unwrap(),
        secret
    );
}

#[tokio::test]
async fn work_dir_under_a_hidden_data_dir_still_works() {
    let dir = temp();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("node.key"), "k").unwrap();
    let rt = need!(sandboxed(RuntimeSection::default(), vec![data.clone()]));
    let mut s = sh(dir.path(), "echo hi > $AGORA_OUTPUT/o; ls /work");
    s.work_dir = data.join("jobs/1");
    let ran = run(&rt, s).await;
    assert_eq!(ran.outcome().exit, Exit::Code(0));
    assert_eq!(ran.stdout(), "out\n");
    assert_eq!(ran.outcome().outputs.len(), 1);
}

#[test]
fn overlays_cover_hidden_paths_under_bound_trees() {
    let dir = temp();
    let work = dir.path().join("job");
    std::fs::create_dir_all(work.join("state")).unwrap();
    std::fs::write(work.join("key"), "k").unwrap();
    let binds = vec![
        Bind {
            src: "/usr".into(),
            dest: "/usr".into(),
        },
        Bind {
            src: work.clone(),
            dest: "/work".into(),
        },
    ];
    let hidden = vec![
        PathBuf::from("/usr/bin"),
        work.join("state"),
        work.join("key"),
        PathBuf::from("/usr/no-such-dir-agora"),
        dir.path().to_path_buf(), // contains the work dir: not covered
    ];
    assert_eq!(
        overlays(&binds, &hidden),
        vec![
            (PathBuf::from("/usr/bin"), true),
            (PathBuf::from("/work/state"), true),
            (PathBuf::from("/work/key"), false),
        ]
    );
}

#[tokio::test]
async fn network_only_when_granted() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let rt = need!(runtime());

    let dir = temp();
    let ran = run(&rt, spec(dir.path(), &["bash", "-c", &script])).await;
    assert_ne!(ran.outcome().exit, Exit::Code(0));
    assert_eq!(ran.stdout(), "");

    let dir = temp();
    let mut s = spec(dir.path(), &["bash", "-c", &script]);
    s.network = true;
    let ran = run(&rt, s).await;
    assert_eq!(ran.outcome().exit, Exit::Code(0), "{}", ran.stderr());
    assert_eq!(ran.stdout(), "connected\n");
}

fn env_of(stdout: &str) -> std::collections::BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn environment_is_ours_and_the_jobs() {
    let dir = temp();
    let mut s = spec(dir.path(), &["env"]);
    s.env = vec![
        ("MY_VAR".to_owned(), "mine".to_owned()),
        ("CUDA_VISIBLE_DEVICES".to_owned(), "7".to_owned()),
        ("NVIDIA_VISIBLE_DEVICES".to_owned(), "all".to_owned()),
        ("AGORA_OUTPUT".to_owned(), "/etc".to_owned()),
        ("AGORA_OTHER".to_owned(), "x".to_owned()),
        ("HOME".to_owned(), "/work/home".to_owned()),
    ];
    s.gpu_indices = vec![0, 2];
    let lease = s.lease_id.clone();
    let ran = run(&need!(runtime()), s).await;
    let mut env = env_of(&ran.stdout());
    // The shell bwrap starts may export its working directory.
    env.remove("PWD");
    let expect: std::collections::BTreeMap<String, String> = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/work/home"),
        ("MY_VAR", "mine"),
        ("AGORA_OUTPUT", "/work/out"),
        ("AGORA_LEASE_ID", lease.as_str()),
        ("CUDA_VISIBLE_DEVICES", "0,2"),
        ("NVIDIA_VISIBLE_DEVICES", "0,2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // Exactly these: nothing of the node's own environment.
    assert_eq!(env, expect);
}

#[tokio::test]
async fn gpu_jobs_see_uuids() {
    let dir = temp();
    let mut s = spec(dir.path(), &["env"]);
    s.gpu_indices = vec![1];
    s.gpu_uuids = vec!["GPU-aaaa".to_owned()];
    let ran = run(&need!(runtime()), s).await;
    assert_eq!(ran.outcome().exit, Exit::Code(0), "{}", ran.stderr());
    let env = env_of(&ran.stdout());
    assert_eq!(env["CUDA_VISIBLE_DEVICES"], "1");
    assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], "GPU-aaaa");
}

#[tokio::test]
async fn output_limits_are_noted() {
    let dir = temp();
    let settings = RuntimeSection {
        max_output_files: 2,
        ..RuntimeSection::default()
    };
    let rt = need!(sandboxed(settings, Vec::new()));
    let script = "cd /work/out; for f in a b c d; do echo $f > $f; done; ln -s /etc/passwd link; \
                  mkfifo pipe";
    let ran = run(&rt, sh(dir.path(), script)).await;
    let outcome = ran.outcome();
    let paths: Vec<&str> = outcome.outputs.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["a", "b"]);
    let note = outcome.outputs_note.as_deref().unwrap();
    assert!(
        note.contains("2 file(s) past max_output_files (2): c, d"),
        "{note}"
    );
    assert!(note.contains("link") && note.contains("pipe"), "{note}");

    let dir = temp();
    let settings = RuntimeSection {
        max_output_bytes: 10,
        ..RuntimeSection::default()
    };
    let rt = need!(sandboxed(settings, Vec::new()));
    let script = "cd /work/out; printf 123456 > a; printf 123456 > b; printf 1 > c";
    let ran = run(&rt, sh(dir.path(), script)).await;
    let outcome = ran.outcome();
    let paths: Vec<&str> = outcome.outputs.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["a"]);
    let note = outcome.outputs_note.as_deref().unwrap();
    assert!(note.contains("past max_output_bytes (10): b, c"), "{note}");
}

#[tokio::test]
async fn replaced_output_dir_is_not_followed() {
    let dir = temp();
    let ran = run(
        &need!(runtime()),
        sh(dir.path(), "rmdir /work/out; ln -s /etc /work/out"),
    )
    .await;
    let outcome = ran.outcome();
    assert!(outcome.outputs.is_empty());
    assert!(outcome.outputs_note.is_some());
}

#[tokio::test]
async fn log_budget_drops_the_rest_with_a_note() {
    let dir = temp();
    let settings = RuntimeSection {
        max_log_bytes: 100,
        ..RuntimeSection::default()
    };
    let rt = need!(sandboxed(settings, Vec::new()));
    // 10 000 lines of 10 bytes: the job must not block on its pipe.
    let script =
        "i=0; while [ $i -lt 10000 ]; do echo 123456789; i=$((i+1)); done; echo fin > /work/out/f";
    let ran = run(&rt, sh(dir.path(), script)).await;
    let outcome = ran.outcome();
    assert_eq!(outcome.exit, Exit::Code(0));
    assert_eq!(ran.stdout().len(), 100);
    assert!(
        ran.stderr().contains("99900 bytes of output dropped"),
        "{}",
        ran.stderr()
    );
    assert_eq!(outcome.outputs.len(), 1);
}

#[tokio::test]
async fn long_lines_are_split_into_chunks() {
    let dir = temp();
    let script = "head -c 20000 /dev/zero | tr '\\0' x; echo; echo short";
    let ran = run(&need!(runtime()), sh(dir.path(), script)).await;
    let mut total = 0;
    for event in &ran.events {
        if let RunEvent::Output { data, .. } = event {
            assert!(data.len() <= MAX_CHUNK);
            total += data.len();
        }
    }
    assert_eq!(total, 20000 + 1 + 6);
    assert!(ran.stdout().ends_with("x\nshort\n"));
}

#[test]
fn chunks_are_whole_lines_batched() {
    let mut buf = b"a\nbb\ncc".to_vec();
    assert_eq!(take_chunk(&mut buf, false), Some(b"a\nbb\n".to_vec()));
    assert_eq!(take_chunk(&mut buf, false), None);
    assert_eq!(take_chunk(&mut buf, true), Some(b"cc".to_vec()));
    assert_eq!(take_chunk(&mut buf, true), None);

    let mut buf = vec![b'x'; MAX_CHUNK + 10];
    buf.push(b'\n');
    assert_eq!(
        take_chunk(&mut buf, false).map(|c| c.len()),
        Some(MAX_CHUNK)
    );
    assert_eq!(take_chunk(&mut buf, false).map(|c| c.len()), Some(11));

    let mut buf = b"a\n".to_vec();
    buf.extend(vec![b'y'; MAX_CHUNK]);
    assert_eq!(take_chunk(&mut buf, false), Some(b"a\n".to_vec()));
    assert_eq!(
        take_chunk(&mut buf, false).map(|c| c.len()),
        Some(MAX_CHUNK)
    );
}

#[test]
fn log_budget_counts_what_it_drops() {
    let budget = LogBudget::new(10);
    assert_eq!(budget.take(6), 6);
    assert_eq!(budget.take(6), 4);
    assert_eq!(budget.take(6), 0);
    assert_eq!(budget.dropped(), 8);
}

#[tokio::test]
async fn without_bwrap_new_refuses_unless_allowed() {
    let settings = RuntimeSection {
        bwrap: Some("/nonexistent/bwrap".into()),
        ..RuntimeSection::default()
    };
    let err = ProcessRuntime::new(settings, Vec::new()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RuntimeError::Unavailable(_)));
    assert!(text.contains("apt-get install bubblewrap"), "{text}");
    assert!(text.contains("runtime.allow_unsandboxed = true"), "{text}");

    let rt = unsandboxed();
    rt.health().await.unwrap();
    let dir = temp();
    let ran = run(
        &rt,
        sh(dir.path(), "pwd; echo $HOME; echo x > \"$AGORA_OUTPUT/f\""),
    )
    .await;
    let outcome = ran.outcome();
    assert_eq!(outcome.exit, Exit::Code(0));
    let work = dir.path().join("job").canonicalize().unwrap();
    assert_eq!(
        ran.stdout(),
        format!("{}\n{}\n", work.display(), work.display())
    );
    assert_eq!(outcome.outputs.len(), 1);
    let missing = run(&rt, spec(dir.path(), &["no-such-program-agora"])).await;
    assert!(matches!(missing.result, Err(RuntimeError::Start(_))));
}

#[tokio::test]
async fn health_is_ok_with_bwrap() {
    let rt = need!(runtime());
    assert_eq!(rt.name(), "process");
    rt.health().await.unwrap();
}

// ---- Limits (limits.rs): cgroups, /tmp's size, disk, descriptors ----

/// A sandboxed runtime with `settings` whose jobs get cgroups, or the
/// test returns (having said why).
fn with_cgroups(settings: RuntimeSection) -> Option<ProcessRuntime> {
    let rt = sandboxed(settings, Vec::new())?;
    has_cgroups(&rt).then_some(rt)
}

/// Whether `rt`'s jobs get cgroups; otherwise it skips (saying why) and
/// the test returns.
fn has_cgroups(rt: &ProcessRuntime) -> bool {
    if rt.cgroups().is_some() {
        return true;
    }
    let why = limits::Cgroups::detect(None).err().unwrap_or_default();
    super::for_tests::skip(&format!(
        "no cgroup this process can make job cgroups in: {why}"
    ));
    false
}

fn limited(f: impl FnOnce(&mut RuntimeSection)) -> RuntimeSection {
    let mut s = RuntimeSection::default();
    f(&mut s);
    s
}

/// Where a run's cgroup is (or was) in each hierarchy.
fn cgroup_dirs(rt: &ProcessRuntime, lease: &str) -> Vec<PathBuf> {
    let name = format!("agora-job-{lease}");
    match rt.cgroups() {
        Some(limits::Cgroups::V1 { pids, memory, cpu }) => {
            vec![pids.join(&name), memory.join(&name), cpu.join(&name)]
        }
        Some(limits::Cgroups::V2 { parent }) => vec![parent.join(&name)],
        None => Vec::new(),
    }
}

#[tokio::test]
async fn a_job_cannot_fork_past_its_pids_limit() {
    let rt = need!(with_cgroups(limited(|s| s.max_pids = 32)));
    let dir = temp();
    // 100 sleepers at once; the shell's fork fails at the limit.
    let spec = sh(
        dir.path(),
        "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo all; wait",
    );
    let lease = spec.lease_id.clone();
    let ran = run(&rt, spec).await;
    let outcome = ran.outcome();
    assert_eq!(
        outcome.exit,
        Exit::Limit(SandboxLimit::Pids),
        "{}",
        ran.stderr()
    );
    assert!(!ran.stdout().contains("all"), "{}", ran.stdout());
    let reason = outcome.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("limit of 32 processes"), "{reason}");
    // Its cgroup is gone with it, and so are the sleepers.
    for dir in cgroup_dirs(&rt, &lease) {
        assert!(!dir.exists(), "{} outlived the job", dir.display());
    }
}

#[tokio::test]
async fn memory_limit_covers_the_jobs_tmp() {
    let rt = need!(with_cgroups(limited(|s| {
        s.max_memory_mib = 96;
        s.tmp_mib = 80;
    })));
    let dir = temp();
    // Baseline in the same sandbox: 48 MiB in /tmp alone fits.
    let fits = run(
        &rt,
        sh(dir.path(), "head -c 48M /dev/zero > /tmp/a && echo ok"),
    )
    .await;
    assert_eq!(fits.outcome().exit, Exit::Code(0), "{}", fits.stderr());
    assert_eq!(fits.stdout(), "ok\n");
    // The same 48 MiB in /tmp and 64 MiB held by a process pass 96 MiB:
    // the tmpfs pages are the job's memory, so the kernel's OOM killer ends it.
    let over = run(
        &rt,
        sh(
            dir.path(),
            "head -c 48M /dev/zero > /tmp/a && head -c 64M /dev/zero | tail -c 64M > /dev/null",
        ),
    )
    .await;
    let outcome = over.outcome();
    assert_eq!(
        outcome.exit,
        Exit::Limit(SandboxLimit::Memory),
        "{}",
        over.stderr()
    );
    let reason = outcome.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("memory limit of 96 MiB"), "{reason}");
}

#[tokio::test]
async fn tmp_is_a_tmpfs_of_the_configured_size() {
    let rt = need!(sandboxed(limited(|s| s.tmp_mib = 8), Vec::new()));
    let dir = temp();
    let ran = run(&rt, sh(dir.path(), "head -c 16M /dev/zero > /tmp/big")).await;
    assert_eq!(ran.outcome().exit, Exit::Code(1));
    assert!(
        ran.stderr().contains("No space left on device"),
        "{}",
        ran.stderr()
    );
}

#[tokio::test]
async fn disk_limit_stops_a_job_while_it_writes() {
    let rt = need!(sandboxed(
        limited(|s| {
            s.max_disk_mib = 8;
            s.max_output_bytes = 8 << 20;
        }),
        Vec::new()
    ));
    let dir = temp();
    // 1 MiB files, one every 50 ms, forever: only the watchdog ends it.
    let ran = run(
        &rt,
        sh(
            dir.path(),
            "i=0; while :; do head -c 1M /dev/zero > \"$AGORA_OUTPUT/f$i\"; i=$((i+1)); \
             sleep 0.05; done",
        ),
    )
    .await;
    let outcome = ran.outcome();
    assert_eq!(outcome.exit, Exit::Limit(SandboxLimit::Disk));
    let reason = outcome.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("over the sandbox's disk limit of 8 MiB"),
        "{reason}"
    );
    // Overshoot is at most what it writes in about one poll (1 s).
    let used = limits::disk_usage(&dir.path().join("job"));
    assert!(used < 40 << 20, "{} MiB on disk", used >> 20);

    // One file larger than the limit is refused by RLIMIT_FSIZE at once.
    let dir = temp();
    let big = run(
        &rt,
        sh(dir.path(), "head -c 16M /dev/zero > \"$AGORA_OUTPUT/big\""),
    )
    .await;
    assert_eq!(big.outcome().exit, Exit::Limit(SandboxLimit::Disk));
    let reason = big.outcome().reason.as_deref().unwrap_or_default();
    assert!(reason.contains("a file larger than"), "{reason}");
}

#[tokio::test]
async fn no_inherited_descriptor_reaches_the_job() {
    use std::os::fd::AsRawFd;
    // A descriptor the node inherited: open and not close-on-exec.
    let file = std::fs::File::open("/etc/hostname").unwrap();
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let fd = file.as_raw_fd();
    let probe = format!("if [ -e /proc/self/fd/{fd} ]; then echo leaked; else echo none; fi");
    // Baseline: a plain child of this process does see it.
    let plain = std::process::Command::new("sh")
        .args(["-c", &probe])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "leaked\n");
    let dir = temp();
    let rt = unsandboxed();
    let ran = run(&rt, sh(dir.path(), &probe)).await;
    assert_eq!(ran.stdout(), "none\n", "unsandboxed");
    let rt = need!(runtime());
    let ran = run(&rt, sh(dir.path(), &probe)).await;
    assert_eq!(ran.stdout(), "none\n", "sandboxed");
    drop(file);
}

#[tokio::test]
async fn a_process_that_leaves_the_session_dies_with_its_cgroup() {
    let rt = unsandboxed();
    if !has_cgroups(&rt) {
        return;
    }
    let dir = temp();
    let marker = format!("agora-escapee-{}", lease_id());
    // A new session, reparented when the shell exits: no tree walk or
    // process group reaches it, only its cgroup does.
    let ran = run(
        &rt,
        sh(
            dir.path(),
            &format!("setsid sh -c 'sleep 300; : {marker}' & sleep 0.2; echo out"),
        ),
    )
    .await;
    assert_eq!(ran.outcome().exit, Exit::Code(0));
    assert_eq!(processes_with(&marker), Vec::<u32>::new());
}

#[tokio::test]
async fn only_the_outputs_stay_after_the_run() {
    let rt = need!(runtime());
    let dir = temp();
    let mut spec = sh(
        dir.path(),
        "mkdir -p scratch/deep && head -c 1M /dev/zero > scratch/deep/x && echo r > \"$AGORA_OUTPUT/r\"",
    );
    spec.inputs = vec![("in/data.txt".to_owned(), b"input".to_vec())];
    let ran = run(&rt, spec).await;
    assert_eq!(ran.outcome().exit, Exit::Code(0));
    let left: Vec<String> = std::fs::read_dir(dir.path().join("job"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["out".to_owned()]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("job/out/r")).unwrap(),
        "r\n"
    );
}

#[tokio::test]
async fn offers_state_the_limits_as_enforced() {
    let rt = unsandboxed();
    let stated = rt.limits();
    let settings = RuntimeSection::default();
    assert_eq!(stated.disk_mib, settings.max_disk_mib);
    // Unsandboxed, /tmp is the host's: no size of ours to state.
    assert_eq!(stated.tmp_mib, 0);
    if rt.cgroups().is_some() {
        assert!(stated.cgroup);
        assert_eq!(stated.pids, settings.max_pids);
        assert_eq!(stated.memory_mib, settings.max_memory_mib);
        assert_eq!(stated.cpu_weight, settings.cpu_weight);
    } else {
        // Nothing enforces them: stated as no limit.
        assert!(!stated.cgroup);
        assert_eq!(
            (stated.pids, stated.memory_mib, stated.cpu_weight),
            (0, 0, 0)
        );
    }
}
