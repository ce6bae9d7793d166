//! Human renderings of the API's answers: pure functions from a view to the
//! text `agora` prints, so they are tested without a node.

mod run;

use agora_protocol::amount::format_fixed;
use agora_protocol::{Amount, DeclineReason, Timestamp};

pub(crate) use run::{log_event, result_files, summary};

use super::table::{Table, fields};
use agora_client::api::{
    BalanceView, JobState, JobView, LeaseStatus, LeaseView, NodeInfo, OfferView, OffersPage,
    ProviderStatus, Role,
};

/// `2.5 AGR`.
pub(crate) fn agr(amount: Amount) -> String {
    format!("{amount} AGR")
}

/// A job state as people say it.
pub(crate) fn state(state: JobState) -> &'static str {
    match state {
        JobState::Bidding => "bidding",
        JobState::Leasing => "leasing",
        JobState::Leased => "leased",
        JobState::Running => "running",
        JobState::Settling => "settling",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
        JobState::NoBids => "no bids",
    }
}

/// A decline reason by its API name (`no_capacity`, `price`, …).
pub(crate) fn decline_reason(reason: DeclineReason) -> String {
    match serde_json::to_value(reason) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{reason:?}"),
    }
}

/// Unix milliseconds as UTC, `2026-05-01 12:00:03Z`.
pub(crate) fn utc(at: Timestamp) -> String {
    let secs = at.0 / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn gib(mib: u64) -> String {
    format_fixed(mib.saturating_mul(10) / 1024, 1)
}

fn tflops(mtflops: u64) -> String {
    format_fixed(mtflops, 3)
}

fn compute_capability(cc: u32) -> String {
    format!("{}.{}", cc / 10, cc % 10)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn offer_notes(o: &OfferView) -> String {
    let mut notes = Vec::new();
    if o.verified {
        notes.push("verified");
    }
    if o.simulated {
        notes.push("simulated");
    }
    notes.join(",")
}

/// `agora offers search`.
pub(crate) fn offers_page(page: &OffersPage) -> String {
    if page.offers.is_empty() {
        return format!(
            "no offers match '{}' ({} in the book)\n",
            page.query, page.book_size
        );
    }
    let mut t = Table::new([
        "ID",
        "PROVIDER",
        "GPU",
        "FREE",
        "VRAM GIB",
        "TFLOPS",
        "AGR/GPU-H",
        "REGION",
        "ENERGY",
        "NOTES",
    ])
    .right(&[3, 4, 5, 6]);
    for o in &page.offers {
        t.row([
            o.id.clone(),
            o.provider.short(),
            o.gpu_model.clone(),
            format!("{}/{}", o.gpu_free, o.gpu_total),
            gib(o.vram_mib),
            tflops(o.fp32_mtflops),
            o.price_per_gpu_hour.to_string(),
            o.region.clone(),
            o.energy.to_string(),
            offer_notes(o),
        ]);
    }
    format!(
        "{t}{} offer(s) match '{}' ({} in the book)\n",
        page.offers.len(),
        page.query,
        page.book_size
    )
}

/// `agora offers show`.
pub(crate) fn offer(o: &OfferView) -> String {
    fields(&[
        ("offer", o.id.clone()),
        ("provider", o.provider.to_string()),
        ("peer", o.provider_peer.clone()),
        ("slot", o.slot.to_string()),
        ("sequence", o.sequence.to_string()),
        ("gpu", o.gpu_model.clone()),
        ("gpus free", format!("{} of {}", o.gpu_free, o.gpu_total)),
        ("vram", format!("{} GiB per GPU", gib(o.vram_mib))),
        ("compute", compute_capability(o.compute_capability)),
        ("fp32", format!("{} TFLOPS per GPU", tflops(o.fp32_mtflops))),
        (
            "price",
            format!("{} per GPU-hour", agr(o.price_per_gpu_hour)),
        ),
        ("region", o.region.clone()),
        (
            "jurisdiction",
            o.jurisdiction.clone().unwrap_or_else(|| "-".into()),
        ),
        ("energy", o.energy.to_string()),
        ("verified", yes_no(o.verified)),
        ("simulated", yes_no(o.simulated)),
        ("runtimes", o.runtimes.join(", ")),
        ("created", utc(o.created_at)),
        ("expires", utc(o.expires_at)),
    ])
}

/// `agora job status` and the end of `agora job submit`: state, reason,
/// lease, bids, declines and steps.
pub(crate) fn job(j: &JobView) -> String {
    let spec = &j.spec;
    let mut head = vec![("job", j.id.clone())];
    if let Some(name) = &j.name {
        head.push(("name", name.clone()));
    }
    head.push(("state", state(j.state).into()));
    if let Some(reason) = &j.reason {
        head.push(("reason", reason.clone()));
    }
    head.push(("submitted", utc(j.submitted_at)));
    if let Some(offer) = &j.offer {
        head.push(("offer", offer.clone()));
    }
    let mut wants = format!(
        "{} x {}",
        spec.resources.gpus,
        spec.resources.gpu_model.as_deref().unwrap_or("any GPU")
    );
    if spec.resources.min_vram_gib > 0 {
        wants.push_str(&format!(", >= {} GiB", spec.resources.min_vram_gib));
    }
    if let Some(region) = &spec.constraints.region {
        wants.push_str(&format!(", region {region}"));
    }
    wants.push_str(&format!(
        ", <= {} AGR/GPU-hour, <= {} s",
        spec.market.max_price_per_gpu_hour, spec.market.max_duration_secs
    ));
    head.push(("wants", wants));
    if !spec.command.is_empty() {
        head.push(("command", spec.command.join(" ")));
    }
    let mut out = fields(&head);

    if let Some(lease) = &j.lease {
        out.push_str("\nlease\n");
        out.push_str(&lease_fields(lease));
    }

    // The instant path has no auction: no bids or declines to speak of.
    let instant = j.offer.is_some() && j.bids.is_empty() && j.declines.is_empty();
    if !instant {
        let mut bids = Table::new(["PROVIDER", "MODEL", "GPUS", "AGR/GPU-H", "SCORE", "LEASED"])
            .right(&[2, 3, 4]);
        for b in &j.bids {
            let leased = j
                .lease
                .as_ref()
                .is_some_and(|l| l.provider == b.provider && l.slot == b.slot);
            bids.row([
                b.provider.short(),
                b.gpu_model.clone(),
                b.gpu_count.to_string(),
                b.price_per_gpu_hour.to_string(),
                b.score.clone(),
                if leased { "*".into() } else { String::new() },
            ]);
        }
        section(&mut out, "bids, best first", &bids);

        let mut declines = Table::new(["PROVIDER", "REASON", "DETAIL"]);
        for d in &j.declines {
            declines.row([
                d.provider.short(),
                decline_reason(d.reason),
                d.detail.clone(),
            ]);
        }
        section(&mut out, "declines", &declines);
    }

    let mut steps = Table::new(["AFTER", "EVENT", "DETAIL"]).right(&[0]);
    for e in &j.events {
        steps.row([
            format!("+{}ms", e.at.ms_since(j.submitted_at)),
            e.event.clone(),
            e.detail.clone(),
        ]);
    }
    section(&mut out, "steps", &steps);
    out.push_str(&run::job_run(j));
    out
}

fn lease_fields(l: &LeaseView) -> String {
    fields(&[
        ("id", l.id.clone()),
        ("provider", l.provider.to_string()),
        (
            "gpus",
            format!("{} x {} (slot {})", l.gpu_count, l.gpu_model, l.slot),
        ),
        (
            "price",
            format!("{} per GPU-hour", agr(l.price_per_gpu_hour)),
        ),
        ("longest run", format!("{} s", l.max_duration_secs)),
        ("starts", utc(l.starts_at)),
        (
            "escrow",
            format!(
                "{} ({})",
                agr(l.escrow),
                match l.status {
                    LeaseStatus::Unfunded => "not locked yet",
                    LeaseStatus::Open => "locked",
                    LeaseStatus::Closed => "closed, all paid",
                    LeaseStatus::Refunded => "closed, the rest refunded",
                }
            ),
        ),
        ("sandbox", sandbox_limits(&l.limits)),
    ])
}

/// A lease's or offer's sandbox limits in one line; zero is "no limit".
pub(crate) fn sandbox_limits(l: &agora_protocol::SandboxLimits) -> String {
    if l.is_empty() {
        return "no limits stated".into();
    }
    let mib = |v: u64| {
        if v == 0 {
            "no limit".to_string()
        } else {
            format!("{v} MiB")
        }
    };
    let pids = if l.pids == 0 {
        "no limit".to_string()
    } else {
        l.pids.to_string()
    };
    format!(
        "memory {} (/tmp {}), disk {}, processes {}{}",
        mib(l.memory_mib),
        mib(l.tmp_mib),
        mib(l.disk_mib),
        pids,
        if l.cgroup {
            ""
        } else {
            "; no cgroup: memory and processes not enforced"
        }
    )
}

/// Why a job that ended badly ended so, for `agora job submit`'s error
/// line; `None` while it is running or once it is leased.
pub(crate) fn outcome_error(j: &JobView) -> Option<String> {
    match j.state {
        JobState::NoBids => {
            let why = if j.declines.is_empty() {
                "no provider answered within the bid window".to_string()
            } else {
                j.declines
                    .iter()
                    .map(|d| {
                        let mut s = format!("{} {}", d.provider.short(), decline_reason(d.reason));
                        if !d.detail.is_empty() {
                            s.push_str(&format!(" ({})", d.detail));
                        }
                        s
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            Some(format!("job {} got no bids: {why}", j.id))
        }
        JobState::Failed => {
            let why = match (&j.reason, j.exit_code) {
                (Some(reason), _) => reason.clone(),
                (None, Some(code)) => format!("it exited with status {code}"),
                (None, None) => "the node gave no reason".into(),
            };
            Some(format!("job {} failed: {why}", j.id))
        }
        JobState::Cancelled => Some(format!("job {} was cancelled", j.id)),
        JobState::Bidding
        | JobState::Leasing
        | JobState::Leased
        | JobState::Running
        | JobState::Settling
        | JobState::Succeeded => None,
    }
}

/// A progress line for `agora job submit`: the state and what came so far.
pub(crate) fn progress(j: &JobView) -> String {
    let mut s = format!("job {}: {}", j.id, state(j.state));
    match j.state {
        JobState::Leased => {
            if let Some(l) = &j.lease {
                s.push_str(&format!(
                    " to {} at {} per GPU-hour",
                    l.provider.short(),
                    agr(l.price_per_gpu_hour)
                ));
            }
        }
        _ => {
            if !j.bids.is_empty() || !j.declines.is_empty() {
                s.push_str(&format!(
                    " ({} bid(s), {} decline(s))",
                    j.bids.len(),
                    j.declines.len()
                ));
            }
        }
    }
    s
}

/// `agora job list`.
pub(crate) fn jobs(jobs: &[JobView]) -> String {
    if jobs.is_empty() {
        return "no jobs\n".into();
    }
    let mut t = Table::new([
        "ID",
        "NAME",
        "STATE",
        "BIDS",
        "DECLINES",
        "PROVIDER",
        "AGR/GPU-H",
        "SUBMITTED",
    ])
    .right(&[3, 4, 6]);
    for j in jobs {
        t.row([
            j.id.clone(),
            j.name.clone().unwrap_or_default(),
            state(j.state).into(),
            j.bids.len().to_string(),
            j.declines.len().to_string(),
            j.lease
                .as_ref()
                .map(|l| l.provider.short())
                .unwrap_or_default(),
            j.lease
                .as_ref()
                .map(|l| l.price_per_gpu_hour.to_string())
                .unwrap_or_default(),
            utc(j.submitted_at),
        ]);
    }
    t.to_string()
}

/// `agora ledger balance`.
pub(crate) fn balance(b: &BalanceView) -> String {
    fields(&[
        ("account", b.account.to_string()),
        ("balance", agr(b.balance)),
    ])
}

/// `agora node info`.
pub(crate) fn node_info(n: &NodeInfo) -> String {
    let mut pairs = vec![
        ("peer", n.peer_id.clone()),
        ("account", n.account.to_string()),
        (
            "role",
            match n.role {
                Role::Provider => "provider",
                Role::Requester => "requester",
            }
            .into(),
        ),
        ("version", n.version.clone()),
        ("peers", n.connected_peers.to_string()),
        ("mesh peers", n.mesh_peers.to_string()),
        ("offers in book", n.offers_in_book.to_string()),
        (
            "gossip",
            format!(
                "{} accepted, {} rejected",
                n.gossip_accepted, n.gossip_rejected
            ),
        ),
    ];
    for addr in &n.listen_addrs {
        pairs.push(("listen", addr.clone()));
    }
    fields(&pairs)
}

/// `agora provider status`.
pub(crate) fn provider_status(p: &ProviderStatus) -> String {
    let driver = match (&p.driver, &p.nvml_unavailable) {
        (Some(d), _) => d.clone(),
        (None, Some(why)) => format!("none ({why})"),
        (None, None) => "none".into(),
    };
    let mut out = fields(&[
        ("driver", driver),
        ("orders seen", p.orders_seen.to_string()),
        ("bids sent", p.bids_sent.to_string()),
        ("declines sent", p.declines_sent.to_string()),
        ("earned", agr(p.earned)),
    ]);

    let mut gpus = Table::new(["INDEX", "MODEL", "VRAM GIB", "CC", "POWER W", "SIM", "UUID"])
        .right(&[0, 2, 3, 4]);
    for g in &p.gpus {
        gpus.row([
            g.index.to_string(),
            g.model.clone(),
            gib(g.vram_mib),
            compute_capability(g.compute_capability),
            g.power_limit_w.to_string(),
            yes_no(g.simulated),
            g.uuid.clone(),
        ]);
    }
    section(&mut out, "gpus", &gpus);

    let mut offers =
        Table::new(["ID", "GPU", "FREE", "AGR/GPU-H", "REGION", "EXPIRES"]).right(&[2, 3]);
    for o in &p.offers {
        offers.row([
            o.id.clone(),
            o.gpu_model.clone(),
            format!("{}/{}", o.gpu_free, o.gpu_total),
            o.price_per_gpu_hour.to_string(),
            o.region.clone(),
            utc(o.expires_at),
        ]);
    }
    section(&mut out, "offers", &offers);

    let mut holds = Table::new(["ORDER", "KIND", "SLOT", "GPUS", "UNTIL"]).right(&[2, 3]);
    for r in &p.reservations {
        holds.row([
            r.order_id.clone(),
            r.kind.clone(),
            r.slot.to_string(),
            r.gpu_count.to_string(),
            utc(r.until),
        ]);
    }
    section(&mut out, "reservations", &holds);

    let mut leases = Table::new([
        "ID",
        "REQUESTER",
        "GPUS",
        "MODEL",
        "AGR/GPU-H",
        "ESCROW",
        "STATUS",
    ])
    .right(&[2, 4, 5]);
    for l in &p.leases {
        leases.row([
            l.id.clone(),
            l.requester.short(),
            l.gpu_count.to_string(),
            l.gpu_model.clone(),
            l.price_per_gpu_hour.to_string(),
            l.escrow.to_string(),
            l.status.as_str().to_string(),
        ]);
    }
    section(&mut out, "leases", &leases);
    run::provider_runs(p, &mut out);
    out
}

/// A blank line, `title (N)` and the table, or `title: none`.
fn section(out: &mut String, title: &str, table: &Table) {
    if table.is_empty() {
        out.push_str(&format!("\n{title}: none\n"));
    } else {
        out.push_str(&format!("\n{title} ({})\n{table}", table.len()));
    }
}

#[cfg(test)]
mod tests {
    use agora_protocol::{Energy, Keypair, PublicKey};

    use super::*;
    use agora_client::api::{
        BidView, Constraints, DeclineView, JobEvent, JobSpec, MarketTerms, Resources,
    };

    fn key(n: u8) -> PublicKey {
        Keypair::from_seed(&[n; 32]).public()
    }

    fn spec() -> JobSpec {
        JobSpec {
            name: Some("train".into()),
            runtime: "process".into(),
            command: vec!["python3".into(), "train.py".into()],
            env: Default::default(),
            inputs: vec![],
            resources: Resources {
                gpus: 1,
                gpu_model: Some("H100".into()),
                min_vram_gib: 80,
                min_tflops: 0.0,
                min_compute_capability: 0.0,
                memory_mib: 0,
                disk_mib: 0,
                tmp_mib: 0,
                processes: 0,
            },
            constraints: Constraints {
                region: Some("EU".into()),
                energy: Some(Energy::Renewable),
                ..Default::default()
            },
            market: MarketTerms {
                max_price_per_gpu_hour: "2.5".into(),
                max_duration_secs: 600,
                bid_window_ms: 1500,
            },
        }
    }

    fn job(state: JobState) -> JobView {
        JobView {
            id: "0a1b2c".into(),
            name: Some("train".into()),
            state,
            reason: None,
            submitted_at: Timestamp(1_700_000_000_000),
            offer: None,
            spec: spec(),
            bids: vec![],
            declines: vec![],
            lease: None,
            events: vec![JobEvent {
                at: Timestamp(1_700_000_000_000),
                event: "order_published".into(),
                detail: String::new(),
            }],
            exit_code: None,
            receipt: None,
            settlement: None,
            outputs: vec![],
            results_fetched: false,
            log_seq: 0,
        }
    }

    fn bid(n: u8, price: u64, score: &str) -> BidView {
        BidView {
            provider: key(n),
            slot: 0,
            gpu_model: "H100".into(),
            gpu_count: 1,
            price_per_gpu_hour: Amount(price),
            fp32_mtflops: 60_000,
            score: score.into(),
            received_at: Timestamp(1_700_000_000_900),
        }
    }

    fn decline(n: u8, reason: DeclineReason, detail: &str) -> DeclineView {
        DeclineView {
            provider: key(n),
            reason,
            detail: detail.into(),
        }
    }

    #[test]
    fn a_leased_job_shows_lease_bids_and_declines() {
        let mut j = job(JobState::Leased);
        j.bids = vec![bid(1, 2_000_000, "33.3"), bid(2, 2_400_000, "40.0")];
        j.declines = vec![decline(
            3,
            DeclineReason::Region,
            "offers US, order wants EU",
        )];
        j.lease = Some(LeaseView {
            limits: agora_protocol::SandboxLimits {
                pids: 512,
                memory_mib: 8192,
                disk_mib: 0,
                tmp_mib: 1024,
                cpu_weight: 100,
                cgroup: true,
            },
            id: "1ea5e".into(),
            order_id: "0a1b2c".into(),
            requester: key(9),
            provider: key(1),
            slot: 0,
            gpu_model: "H100".into(),
            gpu_count: 1,
            price_per_gpu_hour: Amount(2_000_000),
            max_duration_secs: 600,
            starts_at: Timestamp(1_700_000_002_000),
            escrow: Amount(333_334),
            escrow_locked: true,
            status: LeaseStatus::Open,
        });
        let text = super::job(&j);
        assert!(text.contains("state      leased"), "{text}");
        assert!(
            text.contains("memory 8192 MiB (/tmp 1024 MiB), disk no limit, processes 512"),
            "{text}"
        );
        assert!(
            text.contains("escrow       0.333334 AGR (locked)"),
            "{text}"
        );
        assert!(text.contains("bids, best first (2)"), "{text}");
        let columns = |n: u8| -> Vec<String> {
            text.lines()
                .find(|l| l.starts_with(&key(n).short()))
                .unwrap_or_else(|| panic!("no row for provider {n}:\n{text}"))
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            columns(1),
            [key(1).short().as_str(), "H100", "1", "2", "33.3", "*"]
        );
        assert_eq!(
            columns(2),
            [key(2).short().as_str(), "H100", "1", "2.4", "40.0"]
        );
        assert_eq!(
            columns(3),
            [
                key(3).short().as_str(),
                "region",
                "offers",
                "US,",
                "order",
                "wants",
                "EU"
            ]
        );
        assert!(text.contains("+0ms  order_published"), "{text}");
        assert_eq!(outcome_error(&j), None);
    }

    #[test]
    fn no_bids_lists_every_decline_reason() {
        let mut j = job(JobState::NoBids);
        j.declines = vec![
            decline(1, DeclineReason::Price, "floor 3 AGR"),
            decline(2, DeclineReason::NoCapacity, ""),
            decline(3, DeclineReason::Model, "has A100"),
        ];
        let text = super::job(&j);
        assert!(text.contains("state      no bids"), "{text}");
        assert!(text.contains("bids, best first: none"), "{text}");
        assert!(text.contains("declines (3)"), "{text}");
        for (n, reason) in [(1, "price"), (2, "no_capacity"), (3, "model")] {
            let row = text
                .lines()
                .find(|l| l.starts_with(&key(n).short()))
                .unwrap();
            assert!(row.contains(reason), "{row}");
        }
        let err = outcome_error(&j).unwrap();
        assert!(err.starts_with("job 0a1b2c got no bids: "), "{err}");
        assert!(
            err.contains(&format!("{} price (floor 3 AGR)", key(1).short())),
            "{err}"
        );
        assert!(
            err.contains(&format!("{} no_capacity", key(2).short())),
            "{err}"
        );
        assert!(err.contains("model (has A100)"), "{err}");
    }

    #[test]
    fn the_instant_path_shows_no_auction() {
        let mut j = job(JobState::Leasing);
        j.offer = Some("0ffe7".into());
        let text = super::job(&j);
        assert!(text.contains("offer      0ffe7"), "{text}");
        assert!(
            !text.contains("bids") && !text.contains("declines"),
            "{text}"
        );
        j.offer = None;
        let text = super::job(&j);
        assert!(text.contains("bids, best first: none"), "{text}");
        assert!(text.contains("declines: none"), "{text}");
    }

    #[test]
    fn no_bids_without_declines_says_nobody_answered() {
        let err = outcome_error(&job(JobState::NoBids)).unwrap();
        assert!(err.contains("no provider answered"), "{err}");
    }

    #[test]
    fn a_failed_job_shows_its_reason() {
        let mut j = job(JobState::Failed);
        j.reason = Some("escrow: insufficient balance".into());
        let text = super::job(&j);
        assert!(
            text.contains("reason     escrow: insufficient balance"),
            "{text}"
        );
        assert_eq!(
            outcome_error(&j).unwrap(),
            "job 0a1b2c failed: escrow: insufficient balance"
        );
    }

    #[test]
    fn progress_counts_answers_and_names_the_winner() {
        let mut j = job(JobState::Bidding);
        assert_eq!(progress(&j), "job 0a1b2c: bidding");
        j.bids = vec![bid(1, 1, "1")];
        j.declines = vec![decline(2, DeclineReason::Price, "")];
        j.state = JobState::Leasing;
        assert_eq!(progress(&j), "job 0a1b2c: leasing (1 bid(s), 1 decline(s))");
    }

    #[test]
    fn utc_formats_unix_milliseconds() {
        assert_eq!(utc(Timestamp(0)), "1970-01-01 00:00:00Z");
        assert_eq!(utc(Timestamp(1_700_000_000_123)), "2023-11-14 22:13:20Z");
        assert_eq!(utc(Timestamp(951_782_400_000)), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn units_print_as_people_read_them() {
        assert_eq!(agr(Amount(2_500_000)), "2.5 AGR");
        assert_eq!(gib(81_920), "80");
        assert_eq!(gib(81_559), "79.6");
        assert_eq!(tflops(67_000), "67");
        assert_eq!(compute_capability(90), "9.0");
        assert_eq!(decline_reason(DeclineReason::NoCapacity), "no_capacity");
    }
}
