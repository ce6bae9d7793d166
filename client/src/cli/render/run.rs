//! Renderings of a job's run: log events, receipts, settlement, outputs,
//! and a provider's runs.

use agora_protocol::Timestamp;

use super::{agr, fields, section, state, yes_no};
use crate::cli::result::Fetched;
use crate::cli::table::Table;
use agora_client::api::{JobLogEntry, JobView, ProviderStatus, ReceiptView, ResultView};

/// `12:00:01.234` (UTC).
pub(crate) fn time_of_day(at: Timestamp) -> String {
    let ms = at.0 % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// A lifecycle event of the log as one line: `[12:00:01.234] started …`,
/// dimmed when `color`. Control characters from the node are blanked.
pub(crate) fn log_event(e: &JobLogEntry, color: bool) -> String {
    let mut text = format!(
        "[{}] {}",
        time_of_day(e.at),
        e.event.as_deref().unwrap_or("event")
    );
    if !e.text.is_empty() {
        text.push(' ');
        text.push_str(e.text.trim_end());
    }
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if color {
        format!("\x1b[2m{text}\x1b[0m\n")
    } else {
        format!("{text}\n")
    }
}

fn receipt_text(r: &ReceiptView) -> String {
    format!(
        "#{} {} GPU-s, {}{}",
        r.sequence,
        r.gpu_seconds,
        agr(r.amount),
        if r.is_final { " (final)" } else { "" }
    )
}

/// The run part of `agora job status`: empty until the job ran.
pub(crate) fn job_run(j: &JobView) -> String {
    let mut out = String::new();
    let mut pairs = Vec::new();
    if let Some(code) = j.exit_code {
        pairs.push(("exit code", code.to_string()));
    }
    if let Some(r) = &j.receipt {
        pairs.push(("receipt", receipt_text(r)));
    }
    if let Some(s) = &j.settlement {
        pairs.push(("escrow", agr(s.escrow)));
        pairs.push((
            "settled",
            format!("{} (receipt #{})", agr(s.settled), s.last_sequence),
        ));
        pairs.push((
            "refunded",
            s.refunded
                .map(agr)
                .unwrap_or_else(|| "- (lease open)".into()),
        ));
        pairs.push(("ledger ops", s.ledger_ops.to_string()));
    }
    if j.log_seq > 0 {
        pairs.push(("log entries", j.log_seq.to_string()));
    }
    if !pairs.is_empty() {
        out.push_str("\nrun\n");
        out.push_str(&fields(&pairs));
    }
    if !j.outputs.is_empty() {
        let mut t = Table::new(["PATH", "SIZE", "BLAKE3"]).right(&[1]);
        for o in &j.outputs {
            t.row([o.path.clone(), o.size.to_string(), o.blake3.clone()]);
        }
        let title = if j.results_fetched {
            "outputs, fetched"
        } else {
            "outputs, not fetched yet"
        };
        section(&mut out, title, &t);
    }
    out
}

/// The end of `agora job submit --watch`: how the job ended and what it
/// cost.
pub(crate) fn summary(j: &JobView) -> String {
    let mut pairs = vec![("job", j.id.clone()), ("state", state(j.state).into())];
    if let Some(reason) = &j.reason {
        pairs.push(("reason", reason.clone()));
    }
    pairs.push((
        "exit code",
        j.exit_code.map(|c| c.to_string()).unwrap_or("-".into()),
    ));
    match &j.receipt {
        Some(r) => {
            pairs.push(("gpu-seconds", r.gpu_seconds.to_string()));
            pairs.push((
                "amount",
                format!(
                    "{} (receipt #{}{})",
                    agr(r.amount),
                    r.sequence,
                    if r.is_final { ", final" } else { "" }
                ),
            ));
        }
        None => pairs.push(("receipt", "none".into())),
    }
    if let Some(s) = &j.settlement {
        let to = j
            .lease
            .as_ref()
            .map(|l| format!(" to {}", l.provider.short()))
            .unwrap_or_default();
        pairs.push(("settled", format!("{}{to}", agr(s.settled))));
        pairs.push((
            "refunded",
            s.refunded
                .map(agr)
                .unwrap_or_else(|| "- (lease open)".into()),
        ));
        pairs.push(("escrow", agr(s.escrow)));
        pairs.push(("ledger ops", s.ledger_ops.to_string()));
    }
    if !j.outputs.is_empty() {
        pairs.push((
            "outputs",
            format!(
                "{} file(s){}",
                j.outputs.len(),
                if j.results_fetched { ", fetched" } else { "" }
            ),
        ));
    }
    fields(&pairs)
}

/// `agora job result`: the files written and verified.
pub(crate) fn result_files(view: &ResultView, files: &[Fetched]) -> String {
    if files.is_empty() {
        return format!("job {} has no output files\n", view.job_id);
    }
    let mut t = Table::new(["PATH", "SIZE", "BLAKE3", "STATUS"]).right(&[1]);
    for f in files {
        t.row([
            f.file.display().to_string(),
            f.size.to_string(),
            f.blake3.clone(),
            "verified".into(),
        ]);
    }
    format!(
        "{t}{} file(s) of job {} verified against manifest {}\n",
        files.len(),
        view.job_id,
        view.result_hash
    )
}

/// The runs part of `agora provider status`.
pub(crate) fn provider_runs(p: &ProviderStatus, out: &mut String) {
    let mut runs = Table::new([
        "LEASE",
        "ORDER",
        "REQUESTER",
        "STATE",
        "EXIT",
        "GPU-S",
        "SETTLED",
        "CLOSED",
    ])
    .right(&[4, 5, 6]);
    for r in &p.runs {
        runs.row([
            r.lease_id.clone(),
            r.order_id.clone(),
            r.requester.short(),
            match &r.reason {
                Some(reason) => format!("{} ({reason})", r.state),
                None => r.state.clone(),
            },
            r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            r.receipt
                .as_ref()
                .map(|r| r.gpu_seconds.to_string())
                .unwrap_or_default(),
            r.settled.to_string(),
            yes_no(r.closed),
        ]);
    }
    section(out, "runs", &runs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_client::api::LogKind;

    #[test]
    fn events_print_time_name_and_detail_and_dim_only_with_color() {
        let e = JobLogEntry {
            seq: 3,
            at: Timestamp(1_700_000_001_234),
            kind: LogKind::Event,
            event: Some("started".into()),
            text: "pid 42\n".into(),
        };
        assert_eq!(log_event(&e, false), "[22:13:21.234] started pid 42\n");
        assert_eq!(
            log_event(&e, true),
            "\x1b[2m[22:13:21.234] started pid 42\x1b[0m\n"
        );
    }
}
