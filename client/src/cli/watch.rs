//! `agora job list --watch`: the job table kept up to date until ctrl-c.
//! On a terminal the table is redrawn in place; into a pipe it is printed
//! again only when it changed; with `--json` each job whose view changed
//! is printed as one JSON line.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::Context as _;

use super::money::now;
use super::render;
use agora_client::http::NodeClient;

/// What one look printed, to print only what changed at the next.
#[derive(Default)]
pub(crate) struct Seen {
    table: String,
    jobs: HashMap<String, String>,
}

impl Seen {
    /// The JSON lines of the jobs that are new or changed since the last
    /// look, in the node's order.
    pub(crate) fn changed_lines(
        &mut self,
        jobs: &[agora_client::api::JobView],
    ) -> anyhow::Result<String> {
        let mut out = String::new();
        for job in jobs {
            let line = serde_json::to_string(job)?;
            if self.jobs.get(&job.id) != Some(&line) {
                out.push_str(&line);
                out.push('\n');
                self.jobs.insert(job.id.clone(), line);
            }
        }
        Ok(out)
    }

    /// The table, when it differs from the last one printed.
    pub(crate) fn changed_table(&mut self, table: String) -> Option<String> {
        (table != self.table).then(|| {
            self.table = table.clone();
            table
        })
    }
}

/// Watches until ctrl-c (exit 0) or the node fails to answer (exit 1).
pub(crate) async fn jobs(node: &NodeClient, json: bool, interval: Duration) -> anyhow::Result<()> {
    let redraw = !json && std::io::stdout().is_terminal();
    let mut seen = Seen::default();
    loop {
        let jobs = node.jobs().await.context("listing jobs")?;
        let text = if json {
            seen.changed_lines(&jobs)?
        } else if redraw {
            // Home, clear, then the table under a one-line header.
            format!(
                "\x1b[H\x1b[2J{} jobs · every {}s · {} · ctrl-c to stop\n\n{}",
                jobs.len(),
                interval.as_secs(),
                render::utc(now()),
                render::jobs(&jobs)
            )
        } else {
            seen.changed_table(render::jobs(&jobs))
                .map(|t| t + "\n")
                .unwrap_or_default()
        };
        if !text.is_empty() {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                // The reader went away (`| head`): done.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                other => other.context("writing to stdout")?,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_changed_is_printed_again() {
        let mut seen = Seen::default();
        assert_eq!(seen.changed_table("a\n".into()).as_deref(), Some("a\n"));
        assert_eq!(seen.changed_table("a\n".into()), None);
        assert_eq!(seen.changed_table("b\n".into()).as_deref(), Some("b\n"));
    }
}
