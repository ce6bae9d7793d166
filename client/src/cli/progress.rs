//! What `agora job submit` shows while a job waits for bids and a lease:
//! on a terminal an indicatif spinner with the job's state, bids, declines
//! and the time waited, each change kept as a line above it; elsewhere
//! (a pipe, a log file) one plain line per change.

use std::io::IsTerminal as _;
use std::time::Duration;

use agora_client::api::JobView;
use indicatif::{ProgressBar, ProgressStyle};

use super::render;

/// The wait's display.
pub(crate) struct Waiting {
    bar: Option<ProgressBar>,
}

impl Waiting {
    /// Starts showing `job`.
    pub(crate) fn start(job: &JobView) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let waiting = Self { bar };
        waiting.changed(job);
        waiting
    }

    /// The job moved on (a new state, bid or decline): a line for it.
    pub(crate) fn changed(&self, job: &JobView) {
        let line = render::progress(job);
        match &self.bar {
            Some(bar) => {
                bar.println(&line);
                bar.set_message(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// The wait is over: the spinner goes, the lines stay.
    pub(crate) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
