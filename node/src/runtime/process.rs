//! The process runtime (placeholder until the bubblewrap runtime lands:
//! runs the command directly, for wiring tests only).

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Exit, Outcome, OutputFile, RunEvent, RunSpec, Runtime, RuntimeError, Stream};
use crate::config::RuntimeSection;

/// Runs jobs as processes.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    settings: RuntimeSection,
}

impl ProcessRuntime {
    /// A runtime.
    pub fn new(settings: RuntimeSection, _hidden: Vec<PathBuf>) -> Result<Self, RuntimeError> {
        Ok(Self { settings })
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &str {
        "process"
    }

    async fn health(&self) -> Result<(), RuntimeError> {
        let _ = &self.settings;
        Ok(())
    }

    async fn run(
        &self,
        spec: RunSpec,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
    ) -> Result<Outcome, RuntimeError> {
        let out = spec.work_dir.join("out");
        std::fs::create_dir_all(&out)?;
        for (path, data) in &spec.inputs {
            let p = spec.work_dir.join(path);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(p, data)?;
        }
        let mut child = tokio::process::Command::new(&spec.command[0])
            .args(&spec.command[1..])
            .current_dir(&spec.work_dir)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("AGORA_OUTPUT", &out)
            .envs(spec.env.iter().cloned())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RuntimeError::Start(e.to_string()))?;
        let _ = events.send(RunEvent::Started).await;
        let mut stdout = child.stdout.take().ok_or_else(|| RuntimeError::Start("stdout".into()))?;
        let mut stderr = child.stderr.take().ok_or_else(|| RuntimeError::Start("stderr".into()))?;
        let ev2 = events.clone();
        let a = tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 { break; }
                let _ = ev2.send(RunEvent::Output { stream: Stream::Stdout, data: buf[..n].to_vec() }).await;
            }
        });
        let b = tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 { break; }
                let _ = events.send(RunEvent::Output { stream: Stream::Stderr, data: buf[..n].to_vec() }).await;
            }
        });
        let exit = tokio::select! {
            status = child.wait() => {
                let status = status?;
                match status.code() { Some(c) => Exit::Code(c), None => Exit::Signal(9) }
            }
            () = tokio::time::sleep(spec.time_limit) => { let _ = child.kill().await; Exit::TimeLimit }
            () = cancel.cancelled() => { let _ = child.kill().await; Exit::Cancelled }
        };
        let _ = a.await;
        let _ = b.await;
        let mut outputs = Vec::new();
        for entry in std::fs::read_dir(&out)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                let data = std::fs::read(entry.path())?;
                outputs.push(OutputFile {
                    path: entry.file_name().to_string_lossy().into_owned(),
                    size: data.len() as u64,
                    blake3: *blake3::hash(&data).as_bytes(),
                });
            }
        }
        outputs.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Outcome { exit, outputs, output_dir: out, outputs_note: None })
    }
}
