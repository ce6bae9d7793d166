//! `agora-testnet bench`: measures the market end to end on real
//! processes — a mock chain and N `agorad` nodes on loopback.
//!
//! Every latency comes from the nodes' own records, on one machine and one
//! clock: offer propagation from each node's first sighting of each offer
//! version (`GET /v1/node/arrivals`) against the time its provider created
//! it; job latencies from the requesters' job events (`submitted`,
//! `order_published`, `lease_signed`, `running`, `finished`). Memory and
//! CPU are read from `/proc` for every node process.
//!
//! The run: start the testnet; wait until every node's book holds every
//! provider's offer (the mesh is formed); an idle window in which offers
//! are republished on their own refresh and memory and CPU are sampled; a
//! load phase — auctioned jobs, then jobs on the instant path — while
//! memory and CPU are sampled again; then the figures, a table, the JSON
//! and an SVG chart.

mod report;
mod stats;
mod svg;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_client::api::{
    Constraints, JobSpec, JobView, MarketTerms, OfferArrival, Resources, Role, SubmitJob,
};
use agora_client::http::NodeClient;
use agora_protocol::{Amount, Timestamp};
use agora_testnet::{Bootstrap, Testnet, TestnetConfig};
use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::report::{Figures, LoopFigures, print_table};
use self::stats::{ProcReading, max, percentile, read_proc};
use self::svg::{Series, cdf_chart};

/// What each requester is given to spend (jobs cost far less).
const DEPOSIT: Amount = Amount(1_000_000_000);
/// How often a waiting job is read.
const JOB_POLL: Duration = Duration::from_millis(100);
/// How long one job may take from submission to its end.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the mesh may take to form.
const MESH_TIMEOUT: Duration = Duration::from_secs(300);
/// An offer version counts for propagation only if it was created at least
/// this long before the arrivals are read.
const PROPAGATION_SETTLE_MS: u64 = 2_000;
/// Bootstrap peers per node (plus what Kademlia finds).
const BOOTSTRAP_PEERS: usize = 4;
/// Auctions in flight per GPU model: losing bidders hold a GPU until the
/// bid window plus the hold grace, so more would be declined for lack of
/// free GPUs rather than measured.
const AUCTIONS_PER_MODEL: usize = 2;
/// Instant-path jobs in flight at most (one per offer).
const INSTANT_IN_FLIGHT: usize = 32;

/// `agora-testnet bench` options.
pub(crate) struct BenchOptions {
    pub(crate) nodes: usize,
    pub(crate) jobs: usize,
    pub(crate) requesters: Option<usize>,
    pub(crate) json: Option<PathBuf>,
    pub(crate) dir: PathBuf,
    pub(crate) bin_dir: Option<PathBuf>,
    pub(crate) rust_log: String,
    pub(crate) idle_secs: u64,
    pub(crate) offer_refresh_secs: u64,
    pub(crate) bid_window_ms: u32,
    pub(crate) keep: bool,
    pub(crate) ledger: agora_testnet::LedgerBackend,
    pub(crate) target_peers: Option<u32>,
    pub(crate) max_connections: Option<u32>,
}

/// `--json FILE`: exactly these keys (ms, MB = 10^6 bytes, ratios).
#[derive(Debug, Serialize)]
struct Report {
    nodes: usize,
    jobs: usize,
    offer_propagation_ms: P50P99Max,
    offer_delivery_ratio: Option<f64>,
    auction_order_to_lease_ms: P50P99,
    instant_order_to_lease_ms: P50P99,
    submit_to_running_ms: P50P99,
    submit_to_settled_ms: P50P99,
    jobs_per_second: Option<f64>,
    node_rss_mb: Rss,
    ledger_ops_per_lease: Option<f64>,
}

#[derive(Debug, Serialize)]
struct P50P99Max {
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug, Serialize)]
struct P50P99 {
    p50: Option<f64>,
    p99: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Rss {
    idle_p50: Option<f64>,
    idle_max: Option<f64>,
    load_max: Option<f64>,
}

impl P50P99 {
    fn of(samples: &[f64]) -> Self {
        Self {
            p50: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
        }
    }
}

/// One node as the bench sees it.
struct NodeHandle {
    name: String,
    role: Role,
    pid: u32,
    client: NodeClient,
}

/// Starts the testnet, measures, reports, tears it down (unless `keep`).
pub(crate) async fn run(options: BenchOptions) -> anyhow::Result<()> {
    if options.nodes < 2 {
        bail!("--nodes must be at least 2 (a provider and a requester)");
    }
    let requesters = options.requesters.unwrap_or((options.nodes / 10).max(1));
    if requesters == 0 || requesters >= options.nodes {
        bail!(
            "--requesters must be between 1 and {} for {} nodes",
            options.nodes - 1,
            options.nodes
        );
    }
    let providers = options.nodes - requesters;
    crate::demo::build_binaries_if_missing(options.bin_dir.as_deref())?;
    clear_old_bench(&options.dir)?;

    let mut config = TestnetConfig::new(&options.dir, providers, requesters);
    config.bin_dir = options.bin_dir.clone();
    config.rust_log = options.rust_log.clone();
    config.bootstrap = Bootstrap::Sample(BOOTSTRAP_PEERS);
    config.ledger = options.ledger;
    config.ready_timeout = Duration::from_secs(120);
    config.close_grace_ms = 2_000;
    // Offers live and refresh as a node's defaults have them (60 s, every
    // 20 s): a testnet's 2 s refresh would be 10× the gossip of a real
    // market. The refresh can be shortened for a quick run.
    config.node.offer_refresh_secs = options.offer_refresh_secs;
    config.node.offer_ttl_secs =
        (options.offer_refresh_secs * 3).max(options.offer_refresh_secs + 10);
    // A losing bid holds its GPU for the bid window plus this.
    config.node.bid_hold_grace_ms = 1_000;
    config.node.target_peers = options.target_peers;
    config.node.max_connections = options.max_connections;
    config.detach = options.keep;
    eprintln!(
        "bench: starting {}, {providers} providers and {requesters} requesters in {} …",
        crate::chain_words(options.ledger),
        options.dir.display()
    );
    let started = Instant::now();
    let net = Testnet::start(config)
        .await
        .context("the testnet did not start")?;
    eprintln!(
        "bench: {} processes ready in {:.1} s",
        options.nodes + 1,
        started.elapsed().as_secs_f64()
    );
    let outcome = tokio::select! {
        outcome = measure(&net, &options, providers) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = &outcome {
        eprintln!("bench failed: {e:#}\nlast log lines:\n{}", net.log_tails(3));
    }
    if options.keep {
        let manifest = net.detach();
        eprintln!(
            "the testnet keeps running; stop it with:\n  agora-testnet down --dir {}",
            manifest.dir.display()
        );
    } else {
        net.down().await.context("stopping the testnet")?;
    }
    outcome
}

/// The bench directory is scratch: a previous bench's testnet there (all
/// of its processes gone) is removed so its jobs do not mix with these.
fn clear_old_bench(dir: &Path) -> anyhow::Result<()> {
    if !dir.join("testnet.json").exists() {
        return Ok(());
    }
    let mut old = Testnet::from_dir(dir)?;
    let running = old.running();
    if !running.is_empty() {
        bail!(
            "a testnet in {} still runs ({} processes); stop it with `agora-testnet down --dir {}`",
            dir.display(),
            running.len(),
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn measure(net: &Testnet, options: &BenchOptions, providers: usize) -> anyhow::Result<()> {
    let nodes: Vec<NodeHandle> = net
        .nodes()
        .iter()
        .map(|n| {
            Ok(NodeHandle {
                name: n.name.clone(),
                role: n.role,
                pid: n.pid,
                client: net.client(&n.name)?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let requesters: Vec<&NodeHandle> = nodes.iter().filter(|n| n.role == Role::Requester).collect();
    for r in &requesters {
        r.client
            .deposit(DEPOSIT)
            .await
            .with_context(|| format!("deposit to {}", r.name))?;
    }

    // 1. The mesh: every node holds every provider's offer.
    let mesh_started = Instant::now();
    let mesh = wait_for_mesh(&nodes, providers).await?;
    eprintln!(
        "bench: mesh formed in {:.1} s (connections per node p50 {}, mesh peers p50 {})",
        mesh_started.elapsed().as_secs_f64(),
        mesh.connections_p50,
        mesh.mesh_p50
    );

    // 2. Idle: offers republish on their refresh; memory and CPU sampled.
    let t0 = now_ms();
    eprintln!("bench: idle window of {} s …", options.idle_secs);
    let idle = sample_for(&nodes, Duration::from_secs(options.idle_secs)).await;
    let t1 = now_ms();
    let propagation = propagation(&nodes, t0, t1).await?;

    // 3. Load: auctions, then the instant path.
    eprintln!("bench: {} jobs …", options.jobs);
    let load_started = now_ms();
    let (views, load) = {
        let jobs = run_jobs(&requesters, options);
        tokio::pin!(jobs);
        let mut sampler = Sampler::new(&nodes);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                views = &mut jobs => break (views?, sampler.finish()),
                _ = tick.tick() => sampler.sample(),
            }
        }
    };
    let load_ended = now_ms();
    let loops = LoopFigures::read(&nodes).await;

    let (views, lost) = views;
    let mut figures = Figures::from_views(&views);
    if !lost.is_empty() {
        let entry = figures.outcomes.entry("lost".into()).or_default();
        entry.0 = lost.len();
        entry.1 = lost.into_iter().take(2).collect();
    }
    let report = Report {
        nodes: options.nodes,
        jobs: options.jobs,
        offer_propagation_ms: P50P99Max {
            p50: percentile(&propagation.latencies, 50.0),
            p99: percentile(&propagation.latencies, 99.0),
            max: max(&propagation.latencies),
        },
        offer_delivery_ratio: propagation.delivery_ratio(),
        auction_order_to_lease_ms: P50P99::of(&figures.auction_order_to_lease),
        instant_order_to_lease_ms: P50P99::of(&figures.instant_order_to_lease),
        submit_to_running_ms: P50P99::of(&figures.instant_submit_to_running),
        submit_to_settled_ms: P50P99::of(&figures.instant_submit_to_settled),
        jobs_per_second: figures.jobs_per_second,
        node_rss_mb: Rss {
            idle_p50: percentile(&idle.rss_max_mb, 50.0),
            idle_max: max(&idle.rss_max_mb),
            load_max: max(&load.rss_max_mb),
        },
        ledger_ops_per_lease: figures.ledger_ops_per_lease,
    };
    print_table(
        &report,
        &figures,
        &loops,
        &propagation,
        &idle,
        &load,
        &mesh,
        options,
        Duration::from_millis(load_ended.saturating_sub(load_started)),
    );

    let chart = cdf_chart(
        &format!(
            "agora-testnet bench: {} nodes, {} jobs — latency distributions",
            options.nodes, options.jobs
        ),
        &std::iter::once(Series {
            name: "offer propagation",
            samples_ms: &propagation.latencies,
        })
        .chain(
            figures
                .job_series()
                .into_iter()
                .map(|(name, _, _, samples_ms)| Series { name, samples_ms }),
        )
        .collect::<Vec<_>>(),
    );
    let chart_path = match &options.json {
        Some(json) => {
            let text = serde_json::to_string_pretty(&report)?;
            std::fs::write(json, text + "\n")
                .with_context(|| format!("writing {}", json.display()))?;
            println!("\nwrote {}", json.display());
            json.with_extension("svg")
        }
        None => options.dir.join("bench.svg"),
    };
    std::fs::write(&chart_path, chart)
        .with_context(|| format!("writing {}", chart_path.display()))?;
    println!("wrote {}", chart_path.display());
    if figures.succeeded == 0 && options.jobs > 0 {
        bail!("no job succeeded; the figures above say what happened");
    }
    Ok(())
}

/// What the mesh looked like once it formed.
struct Mesh {
    connections_p50: u32,
    mesh_p50: u32,
}

async fn wait_for_mesh(nodes: &[NodeHandle], providers: usize) -> anyhow::Result<Mesh> {
    let deadline = Instant::now() + MESH_TIMEOUT;
    loop {
        let mut infos = JoinSet::new();
        for (i, n) in nodes.iter().enumerate() {
            let client = n.client.clone();
            infos.spawn(async move { (i, client.node_info().await) });
        }
        let mut short = Vec::new();
        let mut connections = Vec::new();
        let mut mesh = Vec::new();
        while let Some(joined) = infos.join_next().await {
            let (i, info) = joined.context("a node query panicked")?;
            let info = info.with_context(|| format!("GET /v1/node of {}", nodes[i].name))?;
            connections.push(f64::from(info.connected_peers));
            mesh.push(f64::from(info.mesh_peers));
            if (info.offers_in_book as usize) < providers {
                short.push(format!("{} ({})", nodes[i].name, info.offers_in_book));
            }
        }
        if short.is_empty() {
            return Ok(Mesh {
                connections_p50: percentile(&connections, 50.0).unwrap_or(0.0) as u32,
                mesh_p50: percentile(&mesh, 50.0).unwrap_or(0.0) as u32,
            });
        }
        if Instant::now() >= deadline {
            short.truncate(10);
            bail!(
                "after {} s some nodes still lack offers from all {providers} providers: {}",
                MESH_TIMEOUT.as_secs(),
                short.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Memory and CPU of every node over a window.
struct Usage {
    /// Per node: its largest resident set, MB.
    rss_max_mb: Vec<f64>,
    /// Per node: CPU used over the window, percent of one core.
    cpu_percent: Vec<f64>,
    /// The largest sum of all nodes' resident sets at one sample, MB.
    total_rss_max_mb: f64,
    /// Per node: its largest private resident memory, MB.
    private_max_mb: Vec<f64>,
    /// The largest sum of all nodes' proportional sets at one sample: the
    /// memory the testnet's nodes really take, MB.
    total_pss_max_mb: f64,
}

struct Sampler {
    pids: Vec<u32>,
    started: Instant,
    first: Vec<Option<ProcReading>>,
    last: Vec<Option<ProcReading>>,
    rss_max: Vec<u64>,
    private_max: Vec<u64>,
    total_max: u64,
    total_pss_max: u64,
}

impl Sampler {
    fn new(nodes: &[NodeHandle]) -> Self {
        let pids: Vec<u32> = nodes.iter().map(|n| n.pid).collect();
        let first: Vec<_> = pids.iter().map(|&p| read_proc(p)).collect();
        let mut sampler = Self {
            rss_max: vec![0; pids.len()],
            private_max: vec![0; pids.len()],
            total_pss_max: 0,
            last: first.clone(),
            first,
            pids,
            started: Instant::now(),
            total_max: 0,
        };
        sampler.sample();
        sampler
    }

    fn sample(&mut self) {
        let (mut total, mut total_pss) = (0, 0);
        for (i, &pid) in self.pids.iter().enumerate() {
            if let Some(reading) = read_proc(pid) {
                self.rss_max[i] = self.rss_max[i].max(reading.rss_bytes);
                self.private_max[i] = self.private_max[i].max(reading.private_bytes.unwrap_or(0));
                total += reading.rss_bytes;
                total_pss += reading.pss_bytes.unwrap_or(0);
                self.last[i] = Some(reading);
            }
        }
        self.total_max = self.total_max.max(total);
        self.total_pss_max = self.total_pss_max.max(total_pss);
    }

    fn finish(mut self) -> Usage {
        self.sample();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        Usage {
            rss_max_mb: self.rss_max.iter().map(|&b| b as f64 / 1e6).collect(),
            cpu_percent: self
                .first
                .iter()
                .zip(&self.last)
                .filter_map(|(a, b)| {
                    Some((b.as_ref()?.cpu_secs - a.as_ref()?.cpu_secs) / secs * 100.0)
                })
                .collect(),
            total_rss_max_mb: self.total_max as f64 / 1e6,
            private_max_mb: self.private_max.iter().map(|&b| b as f64 / 1e6).collect(),
            total_pss_max_mb: self.total_pss_max as f64 / 1e6,
        }
    }
}

async fn sample_for(nodes: &[NodeHandle], window: Duration) -> Usage {
    let mut sampler = Sampler::new(nodes);
    let end = Instant::now() + window;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sampler.sample();
    }
    sampler.finish()
}

/// Offer propagation over the idle window.
struct Propagation {
    /// Versions published in the window by their providers.
    published: usize,
    /// Other nodes that should have seen each.
    receivers: usize,
    /// Receive − create, ms, one per (version, receiving node).
    latencies: Vec<f64>,
    /// Per version: by when 99 % of the other nodes had it, ms (only for
    /// versions that reached 99 %).
    reach_99: Vec<f64>,
}

impl Propagation {
    fn delivery_ratio(&self) -> Option<f64> {
        let expected = self.published * self.receivers;
        (expected > 0).then(|| self.latencies.len() as f64 / expected as f64)
    }
}

async fn propagation(nodes: &[NodeHandle], t0: u64, t1: u64) -> anyhow::Result<Propagation> {
    // Every node's sightings since t0.
    let mut all: Vec<Vec<OfferArrival>> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let mut mine = Vec::new();
        let mut after = Timestamp(t0.saturating_sub(1));
        loop {
            let page = n
                .client
                .offer_arrivals(after, Some(10_000))
                .await
                .with_context(|| format!("GET /v1/node/arrivals of {}", n.name))?;
            if let Some(last) = page.arrivals.last() {
                after = last.received_at;
            }
            let more = page.more;
            mine.extend(page.arrivals);
            if !more {
                break;
            }
        }
        all.push(mine);
    }
    // The versions published in the window, early enough to have spread.
    let cutoff = t1.saturating_sub(PROPAGATION_SETTLE_MS);
    let mut published: HashMap<(String, u64), (usize, u64)> = HashMap::new();
    for (i, arrivals) in all.iter().enumerate() {
        for a in arrivals.iter().filter(|a| a.own) {
            if a.created_at.0 >= t0 && a.created_at.0 <= cutoff {
                published.insert((a.offer.clone(), a.sequence), (i, a.created_at.0));
            }
        }
    }
    let mut per_version: HashMap<(String, u64), Vec<f64>> = HashMap::new();
    for (i, arrivals) in all.iter().enumerate() {
        for a in arrivals.iter().filter(|a| !a.own) {
            let key = (a.offer.clone(), a.sequence);
            if let Some(&(publisher, created)) = published.get(&key)
                && publisher != i
            {
                per_version
                    .entry(key)
                    .or_default()
                    .push(a.received_at.0.saturating_sub(created) as f64);
            }
        }
    }
    let receivers = nodes.len() - 1;
    let needed = (receivers as f64 * 0.99).ceil() as usize;
    let mut reach_99 = Vec::new();
    let mut latencies = Vec::new();
    for samples in per_version.values_mut() {
        samples.sort_by(f64::total_cmp);
        if needed > 0 && samples.len() >= needed {
            reach_99.push(samples[needed - 1]);
        }
        latencies.extend(samples.iter().copied());
    }
    Ok(Propagation {
        published: published.len(),
        receivers,
        latencies,
        reach_99,
    })
}

fn job_spec(index: usize, gpu_model: Option<&str>, bid_window_ms: u32) -> JobSpec {
    JobSpec {
        name: Some(format!("bench-{index}")),
        runtime: "process".into(),
        command: vec!["true".into()],
        env: BTreeMap::new(),
        inputs: vec![],
        resources: Resources {
            gpus: 1,
            gpu_model: gpu_model.map(str::to_string),
            min_vram_gib: 0,
            min_tflops: 0.0,
            min_compute_capability: 0.0,
            memory_mib: 0,
            disk_mib: 0,
            tmp_mib: 0,
            processes: 0,
        },
        constraints: Constraints {
            allow_simulated: true,
            ..Default::default()
        },
        market: MarketTerms {
            max_price_per_gpu_hour: "5".into(),
            max_duration_secs: 60,
            bid_window_ms,
        },
    }
}

/// Runs the jobs: the first half through auctions (GPU models in turn, at
/// most [`AUCTIONS_PER_MODEL`] per model in flight), the rest on the
/// instant path (one in flight per offer), spread over the requesters.
/// Returns every job's last view.
async fn run_jobs(
    requesters: &[&NodeHandle],
    options: &BenchOptions,
) -> anyhow::Result<(Vec<JobView>, Vec<String>)> {
    if options.jobs == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let auctions = options.jobs - options.jobs / 2;
    let instants = options.jobs / 2;
    let book = requesters[0]
        .client
        .search_offers("", Some(1000))
        .await
        .context("reading the requester's book")?;
    let mut models: Vec<String> = book.offers.iter().map(|o| o.gpu_model.clone()).collect();
    models.sort();
    models.dedup();
    if models.is_empty() {
        bail!("the requester's book is empty");
    }
    let mut views = Vec::with_capacity(options.jobs);
    let mut failures = Vec::new();

    // Auctions.
    let limit = Arc::new(Semaphore::new(AUCTIONS_PER_MODEL * models.len()));
    let per_model: Vec<Arc<Semaphore>> = models
        .iter()
        .map(|_| Arc::new(Semaphore::new(AUCTIONS_PER_MODEL)))
        .collect();
    let mut set = JoinSet::new();
    for k in 0..auctions {
        let m = k % models.len();
        let model_permit = per_model[m].clone().acquire_owned().await?;
        let permit = limit.clone().acquire_owned().await?;
        let client = requesters[k % requesters.len()].client.clone();
        let spec = job_spec(k, Some(&models[m]), options.bid_window_ms);
        set.spawn(async move {
            let view = submit_and_wait(&client, SubmitJob { spec, offer: None }).await;
            drop((permit, model_permit));
            view
        });
        collect_finished(&mut set, &mut views, &mut failures)?;
    }
    while let Some(joined) = set.join_next().await {
        keep(
            joined.context("a job task panicked")?,
            &mut views,
            &mut failures,
        );
    }

    // Losing bids hold GPUs for the bid window plus the hold grace (1 s):
    // let them lapse and the offers show it before the instant path.
    tokio::time::sleep(Duration::from_millis(
        u64::from(options.bid_window_ms) + 1_500,
    ))
    .await;

    // The instant path: each job takes one offer, one job per offer at a time.
    let offers: Vec<String> = book.offers.iter().map(|o| o.id.clone()).collect();
    let per_offer: Vec<Arc<Semaphore>> =
        offers.iter().map(|_| Arc::new(Semaphore::new(1))).collect();
    let limit = Arc::new(Semaphore::new(INSTANT_IN_FLIGHT.min(offers.len())));
    for k in 0..instants {
        let o = k % offers.len();
        let offer_permit = per_offer[o].clone().acquire_owned().await?;
        let permit = limit.clone().acquire_owned().await?;
        let client = requesters[k % requesters.len()].client.clone();
        let spec = job_spec(auctions + k, None, options.bid_window_ms);
        let offer = Some(offers[o].clone());
        set.spawn(async move {
            let view = submit_when_free(&client, SubmitJob { spec, offer }).await;
            drop((permit, offer_permit));
            view
        });
        collect_finished(&mut set, &mut views, &mut failures)?;
    }
    while let Some(joined) = set.join_next().await {
        keep(
            joined.context("a job task panicked")?,
            &mut views,
            &mut failures,
        );
    }
    Ok((views, failures))
}

/// A job's last view, or why the bench lost it (not submitted, not
/// readable): counted among the outcomes, never dropped.
fn keep(job: anyhow::Result<JobView>, views: &mut Vec<JobView>, failures: &mut Vec<String>) {
    match job {
        Ok(view) => views.push(view),
        Err(e) => failures.push(format!("{e:#}")),
    }
}

fn collect_finished(
    set: &mut JoinSet<anyhow::Result<JobView>>,
    views: &mut Vec<JobView>,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    while let Some(joined) = set.try_join_next() {
        keep(joined.context("a job task panicked")?, views, failures);
    }
    Ok(())
}

/// On the instant path: submits, waiting while the requester's copy of
/// the offer shows no free GPU (an earlier job's release not yet
/// republished), then follows the job like [`submit_and_wait`].
async fn submit_when_free(client: &NodeClient, job: SubmitJob) -> anyhow::Result<JobView> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match submit_and_wait(client, job.clone()).await {
            Err(e) if format!("{e:#}").contains("NoCapacity") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Submits a job and reads it until it is terminal (or [`JOB_TIMEOUT`]).
async fn submit_and_wait(client: &NodeClient, job: SubmitJob) -> anyhow::Result<JobView> {
    let submitted = client.submit_job(&job).await.context("submitting a job")?;
    let deadline = Instant::now() + JOB_TIMEOUT;
    let mut last = submitted.clone();
    loop {
        tokio::time::sleep(JOB_POLL).await;
        // A node too busy to answer in time is part of what is measured:
        // read again until the deadline instead of giving the bench up.
        match client.job(&submitted.id).await {
            Ok(view) => last = view,
            Err(e) if Instant::now() < deadline => {
                eprintln!(
                    "bench: reading job {} failed ({e}); reading again",
                    submitted.id
                );
            }
            Err(e) => return Err(e).with_context(|| format!("reading job {}", submitted.id)),
        }
        if last.state.is_terminal() || Instant::now() >= deadline {
            return Ok(last);
        }
    }
}
