//! What the bench makes of its readings: the job figures from the
//! requesters' job views, the market loop's times, and the table.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_client::api::{JobState, JobView, Role};

use super::stats::{max, percentile};
use super::{BenchOptions, Mesh, NodeHandle, Propagation, Report, Usage};

/// Each node's market loop time per event (`GET /v1/node`), by role.
#[derive(Default)]
pub(super) struct LoopFigures {
    requesters: Vec<agora_client::api::LoopTimes>,
    providers: Vec<agora_client::api::LoopTimes>,
}

impl LoopFigures {
    pub(super) async fn read(nodes: &[NodeHandle]) -> Self {
        let mut out = Self::default();
        for node in nodes {
            let Ok(info) = node.client.node_info().await else {
                continue;
            };
            match node.role {
                Role::Requester => out.requesters.push(info.market_loop),
                Role::Provider => out.providers.push(info.market_loop),
            }
        }
        out
    }
}

/// Latencies and counts from the requesters' job views.
#[derive(Default)]
pub(super) struct Figures {
    pub(super) auction_order_to_lease: Vec<f64>,
    pub(super) instant_order_to_lease: Vec<f64>,
    pub(super) auction_submit_to_running: Vec<f64>,
    pub(super) instant_submit_to_running: Vec<f64>,
    pub(super) auction_submit_to_settled: Vec<f64>,
    pub(super) instant_submit_to_settled: Vec<f64>,
    pub(super) jobs_per_second: Option<f64>,
    pub(super) ledger_ops_per_lease: Option<f64>,
    pub(super) succeeded: usize,
    /// Jobs by end state, with a few reasons each.
    pub(super) outcomes: BTreeMap<String, (usize, Vec<String>)>,
}

impl Figures {
    /// The job latency series: chart name, table label, goal, samples.
    pub(super) fn job_series(&self) -> [(&'static str, &'static str, &'static str, &[f64]); 6] {
        [
            (
                "auction: order → lease",
                "auction order → lease p50 / p99",
                "(bid window included)",
                &self.auction_order_to_lease,
            ),
            (
                "instant: order → lease",
                "instant order → lease p50 / p99",
                "",
                &self.instant_order_to_lease,
            ),
            (
                "instant: submit → running",
                "instant submit → running p50 / p99",
                "p50 ≤ 100 ms",
                &self.instant_submit_to_running,
            ),
            (
                "auction: submit → running",
                "auction submit → running p50 / p99",
                "",
                &self.auction_submit_to_running,
            ),
            (
                "instant: submit → settled",
                "instant submit → settled p50 / p99",
                "",
                &self.instant_submit_to_settled,
            ),
            (
                "auction: submit → settled",
                "auction submit → settled p50 / p99",
                "",
                &self.auction_submit_to_settled,
            ),
        ]
    }

    pub(super) fn from_views(views: &[JobView]) -> Self {
        let mut f = Figures::default();
        let mut ledger_ops = Vec::new();
        // Per path: first submission and last end of a succeeded job (the
        // paths run one after the other; the pause between is not counted).
        let mut spans = [(u64::MAX, 0u64); 2];
        for v in views {
            let at = |name: &str| v.events.iter().find(|e| e.event == name).map(|e| e.at.0);
            let since = |from: u64, to: Option<u64>| to.map(|t| t.saturating_sub(from) as f64);
            let submitted = v.submitted_at.0;
            let instant = v.offer.is_some();
            let order_start = if instant {
                Some(submitted)
            } else {
                at("order_published")
            };
            if let (Some(start), Some(lease)) = (order_start, at("lease_signed")) {
                let ms = lease.saturating_sub(start) as f64;
                if instant {
                    f.instant_order_to_lease.push(ms);
                } else {
                    f.auction_order_to_lease.push(ms);
                }
            }
            if let Some(ms) = since(submitted, at("running")) {
                if instant {
                    f.instant_submit_to_running.push(ms);
                } else {
                    f.auction_submit_to_running.push(ms);
                }
            }
            let finished = at("finished");
            if v.state == JobState::Succeeded
                && let Some(ms) = since(submitted, finished)
            {
                if instant {
                    f.instant_submit_to_settled.push(ms);
                } else {
                    f.auction_submit_to_settled.push(ms);
                }
                f.succeeded += 1;
                let span = &mut spans[usize::from(instant)];
                span.0 = span.0.min(submitted);
                span.1 = span.1.max(finished.unwrap_or(0));
            }
            if let Some(s) = v.settlement.as_ref().filter(|s| s.refunded.is_some()) {
                ledger_ops.push(f64::from(s.ledger_ops));
            }
            let state = format!("{:?}", v.state).to_lowercase();
            let entry = f.outcomes.entry(state).or_default();
            entry.0 += 1;
            if let Some(reason) = &v.reason
                && entry.1.len() < 3
                && !entry.1.contains(reason)
            {
                entry.1.push(reason.clone());
            }
        }
        let busy_ms: u64 = spans
            .iter()
            .filter(|(first, last)| last > first)
            .map(|(first, last)| last - first)
            .sum();
        if f.succeeded > 0 && busy_ms > 0 {
            f.jobs_per_second = Some(f.succeeded as f64 / (busy_ms as f64 / 1000.0));
        }
        if !ledger_ops.is_empty() {
            f.ledger_ops_per_lease = Some(ledger_ops.iter().sum::<f64>() / ledger_ops.len() as f64);
        }
        f
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.0} ms"))
}

fn mb(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1} MB"))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn print_table(
    report: &Report,
    figures: &Figures,
    loops: &LoopFigures,
    propagation: &Propagation,
    idle: &Usage,
    load: &Usage,
    mesh: &Mesh,
    options: &BenchOptions,
    load_time: Duration,
) {
    let row = |what: &str, value: String, goal: &str| {
        println!("  {what:<46} {value:<38} {goal}");
    };
    println!(
        "\nagora-testnet bench: {} nodes ({} requesters), {} jobs; bid window {} ms; offers refreshed every {} s",
        report.nodes,
        options.requesters.unwrap_or((options.nodes / 10).max(1)),
        report.jobs,
        options.bid_window_ms,
        options.offer_refresh_secs
    );
    println!("  {:<46} {:<38} goal", "measure", "value");
    row(
        "mesh (per node, p50)",
        format!(
            "{} connections, {} gossip mesh peers",
            mesh.connections_p50, mesh.mesh_p50
        ),
        "",
    );
    let p = &report.offer_propagation_ms;
    row(
        "offer propagation p50 / p99 / max",
        format!("{} / {} / {}", ms(p.p50), ms(p.p99), ms(p.max)),
        "",
    );
    row(
        "  offer reaches 99% of nodes (p50 / max)",
        format!(
            "{} / {} over {} versions",
            ms(percentile(&propagation.reach_99, 50.0)),
            ms(max(&propagation.reach_99)),
            propagation.published
        ),
        "≤ 50 ms at 100 nodes",
    );
    row(
        "  offers delivered",
        report.offer_delivery_ratio.map_or_else(
            || "-".into(),
            |r| {
                format!(
                    "{:.2}% ({} of {})",
                    r * 100.0,
                    propagation.latencies.len(),
                    propagation.published * propagation.receivers
                )
            },
        ),
        "100%",
    );
    let pair = |v: &[f64]| {
        format!(
            "{} / {} (n={})",
            ms(percentile(v, 50.0)),
            ms(percentile(v, 99.0)),
            v.len()
        )
    };
    for (_, label, goal, samples) in figures.job_series() {
        row(label, pair(samples), goal);
    }
    row(
        "jobs completed per second",
        report.jobs_per_second.map_or_else(
            || "-".into(),
            |j| {
                format!(
                    "{j:.2} ({} in {:.1} s of load)",
                    figures.succeeded,
                    load_time.as_secs_f64()
                )
            },
        ),
        "",
    );
    row(
        "node RSS idle p50 / max",
        format!(
            "{} / {}",
            mb(report.node_rss_mb.idle_p50),
            mb(report.node_rss_mb.idle_max)
        ),
        "≤ 15 MB",
    );
    row(
        "node RSS under load p50 / max",
        format!(
            "{} / {}",
            mb(percentile(&load.rss_max_mb, 50.0)),
            mb(report.node_rss_mb.load_max)
        ),
        "",
    );
    row(
        "  private memory per node, idle p50 / load max",
        format!(
            "{} / {}",
            mb(percentile(&idle.private_max_mb, 50.0)),
            mb(max(&load.private_max_mb))
        ),
        "",
    );
    row(
        "all nodes' RSS sum, idle / load",
        format!(
            "{:.0} MB / {:.0} MB (code pages counted once per node)",
            idle.total_rss_max_mb, load.total_rss_max_mb
        ),
        "",
    );
    row(
        "all nodes' PSS sum, idle / load",
        format!(
            "{:.0} MB / {:.0} MB (what they take)",
            idle.total_pss_max_mb, load.total_pss_max_mb
        ),
        "≤ 2000 MB at 100 nodes",
    );
    let cpu = |u: &Usage| {
        format!(
            "{:.1}% / {:.1}% of a core",
            percentile(&u.cpu_percent, 50.0).unwrap_or(0.0),
            max(&u.cpu_percent).unwrap_or(0.0)
        )
    };
    row("node CPU idle p50 / max", cpu(idle), "");
    row("node CPU under load p50 / max", cpu(load), "");
    for (what, times) in [
        ("requesters", &loops.requesters),
        ("providers", &loops.providers),
    ] {
        let p50: Vec<f64> = times.iter().map(|t| t.p50_us as f64).collect();
        let p99: Vec<f64> = times.iter().map(|t| t.p99_us as f64).collect();
        let worst = times.iter().map(|t| t.max_us).max().unwrap_or(0);
        let events: u64 = times.iter().map(|t| t.events).sum();
        row(
            &format!("market loop per event, {what} p50 / p99 / max"),
            format!(
                "{:.0} / {:.0} / {worst} µs ({events} events)",
                percentile(&p50, 50.0).unwrap_or(0.0),
                max(&p99).unwrap_or(0.0),
            ),
            "",
        );
    }
    row(
        "ledger operations per lease",
        report
            .ledger_ops_per_lease
            .map_or_else(|| "-".into(), |o| format!("{o:.2}")),
        "3",
    );
    println!("  job outcomes:");
    for (state, (count, reasons)) in &figures.outcomes {
        if reasons.is_empty() {
            println!("    {state:<10} {count}");
        } else {
            println!("    {state:<10} {count}  e.g. {}", reasons.join(" | "));
        }
    }
}
