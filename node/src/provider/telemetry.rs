//! The GPU telemetry sampler: a provider-side actor that reads every GPU's
//! counters through NVML every `provider.telemetry_interval_secs`
//! (utilization, memory used, power, temperature) and keeps the last hour
//! of readings per GPU in a bounded ring ([`ring`]). A simulated GPU has no
//! counters: its samples carry only whether a lease's run holds it.
//!
//! NVML's calls block, so a reading runs on a blocking thread with a
//! deadline; at most one such thread exists at a time, so a hung driver
//! costs one thread and shows as an error on every GPU, never a stuck
//! sampler. Without a driver, NVML's error is each real GPU's `error` and
//! loading it is tried again at the next tick.
//!
//! The API reads the rings through [`Telemetry`], a cheap handle over a
//! bounded channel: `GET /v1/provider/telemetry` and the metrics scrape.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agora_client::api::GpuTelemetry;
use futures::future::BoxFuture;
use nvml_wrapper::Nvml;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::now;
use crate::provider::inventory::Gpu;

mod nvml;
pub mod ring;

pub use ring::{Reading, Rings};

/// Requests waiting for the sampler at most.
const COMMANDS: usize = 16;
/// How much history each GPU keeps.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// A reading NVML has not finished by then is given up.
const READ_DEADLINE: Duration = Duration::from_secs(10);
/// How long a caller waits for the sampler's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The indices of the GPUs a lease's run holds now.
pub type Leased = Arc<dyn Fn() -> Vec<u32> + Send + Sync>;

/// What the sampler needs.
pub struct TelemetryOptions {
    /// The provider's GPUs.
    pub gpus: Vec<Gpu>,
    /// Time between readings.
    pub interval: Duration,
    /// Which GPUs are leased (the executor's runs).
    pub leased: Leased,
    /// Stops the sampler.
    pub cancel: CancellationToken,
}

/// Why the sampler did not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TelemetryError {
    /// It has stopped (the node is shutting down).
    #[error("the GPU telemetry sampler has stopped")]
    Stopped,
    /// It did not answer in time.
    #[error("the GPU telemetry sampler did not answer within {0:?}")]
    Timeout(Duration),
}

enum Command {
    Views {
        last: Option<usize>,
        reply: oneshot::Sender<Vec<GpuTelemetry>>,
    },
}

/// The front of the sampler. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Telemetry {
    commands: mpsc::Sender<Command>,
}

impl Telemetry {
    /// Starts the sampler; the first reading is taken at once.
    pub fn spawn(options: TelemetryOptions) -> Self {
        let (commands, rx) = mpsc::channel(COMMANDS);
        let interval = options.interval.max(Duration::from_secs(1));
        let capacity = usize::try_from(WINDOW.as_secs() / interval.as_secs().max(1)).unwrap_or(1);
        let sampler = Sampler {
            rings: Rings::new(&options.gpus, capacity),
            leased: options.leased,
            nvml: None,
            nvml_error: None,
            stuck: None,
        };
        tokio::spawn(sampler.run(rx, interval, options.cancel));
        Self { commands }
    }

    /// Every GPU with all its recent samples, oldest first.
    pub async fn views(&self) -> Result<Vec<GpuTelemetry>, TelemetryError> {
        self.ask(None).await
    }

    /// Every GPU with only its latest sample.
    pub async fn latest(&self) -> Result<Vec<GpuTelemetry>, TelemetryError> {
        self.ask(Some(1)).await
    }

    async fn ask(&self, last: Option<usize>) -> Result<Vec<GpuTelemetry>, TelemetryError> {
        let ask = async {
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(Command::Views { last, reply })
                .await
                .map_err(|_| TelemetryError::Stopped)?;
            answer.await.map_err(|_| TelemetryError::Stopped)
        };
        tokio::time::timeout(ASK_TIMEOUT, ask)
            .await
            .map_err(|_| TelemetryError::Timeout(ASK_TIMEOUT))?
    }
}

/// One reading of every real GPU: NVML (kept for the next one) and each
/// GPU's counters by UUID, or why NVML could not be loaded.
type Batch = (
    Option<Arc<Nvml>>,
    Result<HashMap<String, Result<Reading, String>>, String>,
);

/// The blocking thread's answer, within the deadline.
type Done = Result<Result<Batch, tokio::task::JoinError>, tokio::time::error::Elapsed>;

/// A reading on its way: when it was started, which GPUs were leased then,
/// the blocking thread's answer, and whether that thread still runs.
struct InFlight {
    at: agora_protocol::Timestamp,
    leased: Vec<u32>,
    batch: BoxFuture<'static, Done>,
    running: Arc<AtomicBool>,
}

struct Sampler {
    rings: Rings,
    leased: Leased,
    nvml: Option<Arc<Nvml>>,
    /// NVML's last load error, logged once per change.
    nvml_error: Option<String>,
    /// Set while a reading that missed its deadline still holds its
    /// thread.
    stuck: Option<Arc<AtomicBool>>,
}

impl Sampler {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_flight: Option<InFlight> = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                command = commands.recv() => match command {
                    Some(Command::Views { last, reply }) => {
                        let _ = reply.send(self.rings.views(last));
                    }
                    None => break,
                },
                done = next(&mut in_flight) => {
                    let Some(read) = in_flight.take() else { continue };
                    self.finish(read.at, &read.leased, done, read.running);
                }
                _ = tick.tick(), if in_flight.is_none() => in_flight = self.start(),
            }
        }
    }

    /// Samples now: simulated GPUs at once; real ones on a blocking thread,
    /// unless an earlier reading still hangs.
    fn start(&mut self) -> Option<InFlight> {
        let at = now();
        let leased = (self.leased)();
        let uuids = self.rings.real_uuids();
        if uuids.is_empty() {
            self.rings.record(at, &leased, |_| Err("not read".into()));
            return None;
        }
        if let Some(stuck) = &self.stuck {
            if stuck.load(Ordering::Acquire) {
                let why = format!(
                    "NVML has not answered a reading started over {} s ago",
                    READ_DEADLINE.as_secs()
                );
                self.rings.record(at, &leased, |_| Err(why.clone()));
                return None;
            }
            self.stuck = None;
        }
        let nvml = self.nvml.take();
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let batch = read_all(nvml, &uuids);
            flag.store(false, Ordering::Release);
            batch
        });
        let batch = Box::pin(tokio::time::timeout(READ_DEADLINE, handle));
        Some(InFlight {
            at,
            leased,
            batch,
            running,
        })
    }

    fn finish(
        &mut self,
        at: agora_protocol::Timestamp,
        leased: &[u32],
        done: Done,
        running: Arc<AtomicBool>,
    ) {
        let readings = match done {
            Ok(Ok((nvml, readings))) => {
                self.nvml = nvml;
                readings
            }
            Ok(Err(e)) => Err(format!("the NVML reading failed: {e}")),
            Err(_) => {
                self.stuck = Some(running);
                Err(format!(
                    "NVML did not answer within {} s",
                    READ_DEADLINE.as_secs()
                ))
            }
        };
        match &readings {
            Err(why) if self.nvml_error.as_ref() != Some(why) => {
                warn!(reason = %why, "GPU telemetry: no NVML readings");
                self.nvml_error = Some(why.clone());
            }
            Ok(_) if self.nvml_error.take().is_some() => {
                info!("GPU telemetry: NVML readings again");
            }
            _ => {}
        }
        self.rings.record(at, leased, |uuid| match &readings {
            Ok(by_uuid) => by_uuid
                .get(uuid)
                .cloned()
                .unwrap_or_else(|| Err(format!("NVML was not asked about GPU {uuid}"))),
            Err(why) => Err(why.clone()),
        });
    }
}

/// The reading on its way, if there is one; never ready otherwise.
async fn next(in_flight: &mut Option<InFlight>) -> Done {
    match in_flight {
        Some(read) => (&mut read.batch).await,
        None => std::future::pending().await,
    }
}

/// Loads NVML when it is not loaded yet, then reads every GPU.
fn read_all(nvml: Option<Arc<Nvml>>, uuids: &[String]) -> Batch {
    let nvml = match nvml {
        Some(nvml) => nvml,
        None => match nvml::init() {
            Ok(nvml) => Arc::new(nvml),
            Err(why) => return (None, Err(why)),
        },
    };
    let readings = uuids
        .iter()
        .map(|uuid| (uuid.clone(), nvml::read(&nvml, uuid)))
        .collect();
    (Some(nvml), Ok(readings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, simulated: bool) -> Gpu {
        Gpu {
            index,
            uuid: format!("GPU-agora-test-{index}"),
            model: "H100".into(),
            vram_mib: 81_920,
            compute_capability: 90,
            power_limit_w: 0,
            benchmark: None,
            simulated,
        }
    }

    async fn sampled(telemetry: &Telemetry) -> Vec<GpuTelemetry> {
        for _ in 0..200 {
            let views = telemetry.views().await.unwrap();
            if views.iter().all(|v| !v.samples.is_empty()) {
                return views;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no samples");
    }

    #[tokio::test]
    async fn simulated_gpus_are_sampled_at_once_with_who_holds_them() {
        let cancel = CancellationToken::new();
        let telemetry = Telemetry::spawn(TelemetryOptions {
            gpus: vec![gpu(0, true), gpu(1, true)],
            interval: Duration::from_secs(5),
            leased: Arc::new(|| vec![1]),
            cancel: cancel.clone(),
        });
        let views = sampled(&telemetry).await;
        assert_eq!(views.len(), 2);
        let (a, b) = (&views[0].samples[0], &views[1].samples[0]);
        assert!(!a.leased && b.leased);
        assert!(views.iter().all(|v| v.simulated && v.error.is_none()));
        assert_eq!(b.utilization_pct, None);
        assert_eq!(telemetry.latest().await.unwrap()[1].samples.len(), 1);
        cancel.cancel();
        // A stopped sampler says so instead of hanging.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(
            telemetry.views().await,
            Err(TelemetryError::Stopped)
        ));
    }

    #[tokio::test]
    async fn a_gpu_nvml_cannot_read_has_samples_without_counters_and_the_reason() {
        // No such UUID exists: without a driver NVML does not load, with
        // one it cannot open this GPU. Either way: an error, no panic.
        let cancel = CancellationToken::new();
        let telemetry = Telemetry::spawn(TelemetryOptions {
            gpus: vec![gpu(0, false), gpu(1, true)],
            interval: Duration::from_secs(5),
            leased: Arc::new(Vec::new),
            cancel: cancel.clone(),
        });
        let views = sampled(&telemetry).await;
        let real = &views[0];
        assert!(!real.simulated);
        let why = real.error.as_deref().unwrap();
        assert!(why.contains("NVML"), "{why}");
        assert_eq!(real.samples[0].power_mw, None);
        assert_eq!(views[1].error, None);
        cancel.cancel();
    }
}
