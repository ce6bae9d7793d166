//! `agora billing` and `agora provider earnings`: money over time from
//! countersigned receipts, by hour or day.

use std::time::{SystemTime, UNIX_EPOCH};

use agora_client::api::{Bucket, MoneyPage};
use agora_protocol::Timestamp;

use super::render::{agr, utc};
use super::table::{Table, fields};

/// `--since`: a span back from now or a Unix time in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Since {
    /// This many milliseconds before now.
    Back(u64),
    /// This Unix time (ms).
    At(u64),
}

impl Since {
    /// The time it names, `now` being the local clock.
    pub(crate) fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            Since::Back(ms) => Timestamp(now.0.saturating_sub(ms)),
            Since::At(ms) => Timestamp(ms),
        }
    }
}

/// Parses `90m`, `24h`, `7d`, `2w` or Unix milliseconds (`1764547200000`).
pub(crate) fn parse_since(text: &str) -> Result<Since, String> {
    let text = text.trim();
    let unit = |c: char| match c {
        'm' => Some(60_000u64),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        'w' => Some(7 * 86_400_000),
        _ => None,
    };
    let bad = || {
        format!("{text:?} is neither a span back from now (90m, 24h, 7d, 2w) nor Unix milliseconds")
    };
    match text.chars().last().and_then(unit) {
        Some(ms) => {
            let n: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
            n.checked_mul(ms).map(Since::Back).ok_or_else(bad)
        }
        None => text.parse().map(Since::At).map_err(|_| bad()),
    }
}

/// The local clock as a [`Timestamp`].
pub(crate) fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// A money page: one row per bucket, then the totals. `what` is
/// `earned` or `spent`.
pub(crate) fn page(p: &MoneyPage, what: &str) -> String {
    let width = match p.bucket {
        Bucket::Hour => "HOUR",
        Bucket::Day => "DAY",
    };
    let mut out = String::new();
    if p.buckets.is_empty() {
        out.push_str(&format!(
            "nothing {what} since {} (countersigned receipts)\n",
            utc(p.since)
        ));
    } else {
        let title = format!("{width} (UTC)");
        let amount = format!("AGR {}", what.to_uppercase());
        let mut t =
            Table::new([title.as_str(), amount.as_str(), "RECEIPTS", "LEASES"]).right(&[1, 2, 3]);
        for b in &p.buckets {
            let start = utc(b.start);
            let start = match p.bucket {
                Bucket::Hour => start[..16].to_string() + "Z",
                Bucket::Day => start[..10].to_string(),
            };
            t.row([
                start,
                b.amount.to_string(),
                b.receipts.to_string(),
                b.leases.to_string(),
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out.push_str(&fields(&[
        ("last 24 h", agr(p.last_24h)),
        ("last 7 d", agr(p.last_7d)),
        ("all time", agr(p.all_time)),
        ("settled on the ledger", agr(p.settled)),
    ]));
    out
}

#[cfg(test)]
mod tests {
    use agora_client::api::MoneyBucket;
    use agora_protocol::Amount;

    use super::*;

    #[test]
    fn since_takes_spans_and_unix_milliseconds_and_names_what_it_refuses() {
        assert_eq!(parse_since("90m"), Ok(Since::Back(90 * 60_000)));
        assert_eq!(parse_since("24h"), Ok(Since::Back(86_400_000)));
        assert_eq!(parse_since("7d"), Ok(Since::Back(7 * 86_400_000)));
        assert_eq!(parse_since("2w"), Ok(Since::Back(14 * 86_400_000)));
        assert_eq!(
            parse_since("1764547200000"),
            Ok(Since::At(1_764_547_200_000))
        );
        for bad in ["", "d", "7x", "-3d", "yesterday", "99999999999999999999d"] {
            let err = parse_since(bad).unwrap_err();
            assert!(err.contains("span back from now"), "{bad}: {err}");
        }
        assert_eq!(Since::Back(10).resolve(Timestamp(25)), Timestamp(15));
        assert_eq!(Since::Back(100).resolve(Timestamp(25)), Timestamp(0));
        assert_eq!(Since::At(7).resolve(Timestamp(25)), Timestamp(7));
    }

    #[test]
    fn a_page_lists_its_buckets_then_the_totals() {
        let day = 86_400_000;
        let p = MoneyPage {
            bucket: Bucket::Hour,
            since: Timestamp(20_000 * day),
            buckets: vec![MoneyBucket {
                start: Timestamp(20_000 * day + 3_600_000),
                amount: Amount(1_500_000),
                receipts: 3,
                leases: 2,
            }],
            last_24h: Amount(1_500_000),
            last_7d: Amount(2_000_000),
            all_time: Amount(9_000_000),
            settled: Amount(1_000_000),
        };
        let text = page(&p, "earned");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("HOUR (UTC)"), "{text}");
        assert!(lines[0].contains("AGR EARNED"), "{text}");
        assert!(lines[1].starts_with("2024-10-04 01:00Z"), "{text}");
        assert!(lines[1].ends_with("1.5         3       2"), "{text}");
        assert!(text.contains("all time"), "{text}");
        assert!(text.contains("9 AGR"), "{text}");
        assert!(text.contains("settled on the ledger  1 AGR"), "{text}");
        let empty = MoneyPage {
            buckets: vec![],
            bucket: Bucket::Day,
            ..p
        };
        assert!(page(&empty, "spent").starts_with("nothing spent since 2024-10-04"));
    }
}
