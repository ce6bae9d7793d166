//! `agora job logs` and the log half of `agora job submit --watch`: printing
//! a job's log entries, paging them, following them live.

use std::io::{IsTerminal as _, Write};

use anyhow::Context as _;

use super::render;
use agora_client::api::{JobLogEntry, JobView, LogKind};
use agora_client::http::{NodeClient, StreamItem};

/// Entries asked for per page of `GET /v1/jobs/{id}/log`.
const PAGE: u32 = 500;

/// Where entries go: output to the matching stream, events dimmed on
/// stderr; with `--json` one entry per line on stdout.
pub(crate) struct LogPrinter {
    json: bool,
    color: bool,
}

impl LogPrinter {
    /// Colours only when stderr is a terminal and `NO_COLOR` is unset.
    pub(crate) fn new(json: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            json,
            color: !json && !no_color && std::io::stderr().is_terminal(),
        }
    }

    /// Prints one entry. A closed stdout (`| head`) is not an error.
    pub(crate) fn print(&self, entry: &JobLogEntry) -> anyhow::Result<()> {
        let result = if self.json {
            let mut line = serde_json::to_string(entry)?;
            line.push('\n');
            write_all(&mut std::io::stdout().lock(), &line)
        } else {
            match entry.kind {
                LogKind::Stdout => write_all(&mut std::io::stdout().lock(), &as_lines(&entry.text)),
                LogKind::Stderr => write_all(&mut std::io::stderr().lock(), &as_lines(&entry.text)),
                LogKind::Event => write_all(
                    &mut std::io::stderr().lock(),
                    &render::log_event(entry, self.color),
                ),
            }
        };
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("writing the job's log"),
        }
    }
}

fn write_all(w: &mut impl Write, text: &str) -> std::io::Result<()> {
    w.write_all(text.as_bytes())?;
    w.flush()
}

/// Output text ending in a newline, so the next entry starts a line.
fn as_lines(text: &str) -> String {
    let mut text = text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Prints the entries that exist after `after`, page by page, and returns.
pub(crate) async fn print_existing(
    node: &NodeClient,
    printer: &LogPrinter,
    id: &str,
    mut after: u64,
) -> anyhow::Result<()> {
    loop {
        let page = node
            .job_log(id, after, Some(PAGE))
            .await
            .with_context(|| format!("reading the log of job {id}"))?;
        for entry in &page.entries {
            printer.print(entry)?;
        }
        // A page that does not move on would loop forever.
        if page.finished || page.entries.is_empty() || page.next <= after {
            return Ok(());
        }
        after = page.next;
    }
}

/// Follows the job's stream from `after` to its end and returns the final
/// view.
pub(crate) async fn follow(
    node: &NodeClient,
    printer: &LogPrinter,
    id: &str,
    after: u64,
) -> anyhow::Result<JobView> {
    let mut stream = node.stream_job(id, after);
    loop {
        match stream
            .next()
            .await
            .with_context(|| format!("following job {id}"))?
        {
            Some(StreamItem::Entry(entry)) => printer.print(&entry)?,
            Some(StreamItem::End(job)) => return Ok(*job),
            None => anyhow::bail!("the log stream of job {id} ended without its end event"),
        }
    }
}
