//! How long the market loop takes per event: a bounded ring of the latest
//! handling times, summarised for `GET /v1/node` (`market_loop`), which the
//! bench reads.

use std::collections::VecDeque;
use std::time::Duration;

use agora_client::api::LoopTimes;

/// Events whose time is kept.
const KEPT: usize = 4096;

/// The latest handling times, in µs.
#[derive(Debug, Default)]
pub(crate) struct LoopStats {
    recent: VecDeque<u32>,
    events: u64,
}

impl LoopStats {
    pub(crate) fn record(&mut self, took: Duration) {
        if self.recent.len() == KEPT {
            self.recent.pop_front();
        }
        self.recent
            .push_back(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        self.events += 1;
    }

    pub(crate) fn view(&self) -> LoopTimes {
        let mut sorted: Vec<u32> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: f64| -> u64 {
            if sorted.is_empty() {
                return 0;
            }
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let i = ((sorted.len() - 1) as f64 * q).round() as usize;
            u64::from(sorted[i.min(sorted.len() - 1)])
        };
        LoopTimes {
            events: self.events,
            sampled: sorted.len() as u64,
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: sorted.last().map_or(0, |m| u64::from(*m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_over_the_kept_events() {
        let mut s = LoopStats::default();
        assert_eq!(s.view().p99_us, 0);
        for us in 1..=100 {
            s.record(Duration::from_micros(us));
        }
        let v = s.view();
        assert_eq!((v.events, v.sampled, v.max_us), (100, 100, 100));
        assert_eq!(v.p50_us, 51);
        assert_eq!(v.p99_us, 99);
        for _ in 0..KEPT {
            s.record(Duration::from_micros(7));
        }
        let v = s.view();
        assert_eq!((v.sampled, v.max_us, v.p99_us), (KEPT as u64, 7, 7));
    }
}
