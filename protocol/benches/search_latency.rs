//! Offer search latency percentiles over a 100k-offer book: criterion
//! reports means, the goal is about p99. Run with
//! `cargo bench -p agora-protocol --bench search_latency`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::hint::black_box;
use std::time::Instant;

use agora_protocol::{Query, SortKey, Timestamp};

fn main() {
    let started = Instant::now();
    let book = support::book(100_000);
    println!(
        "built a book of {} signed offers in {:.1?}",
        book.len(),
        started.elapsed()
    );
    let queries = [
        ("gpu=H100 vram>=40 price<=3 region=EU", None),
        ("gpu~A1 count>=2 tflops>=30 energy=renewable", None),
        (
            "vram>=80 price<=2.5 cc>=8.9 !simulated",
            Some("tflop_price"),
        ),
        (
            "region=US-EAST bandwidth>=2000 count>=1 tflop_price<=0.05",
            Some("-tflops"),
        ),
    ];
    let now = Timestamp(2);
    let rounds = 500;
    let mut all = Vec::with_capacity(rounds * queries.len());
    for (text, sort) in queries {
        let query = Query::parse(text).unwrap();
        let sort: Option<SortKey> = sort.map(|s| s.parse().unwrap());
        let mut samples = Vec::with_capacity(rounds);
        let mut hits = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            hits = black_box(book.search(&query, sort, 50, now)).len();
            samples.push(t.elapsed().as_secs_f64() * 1e3);
        }
        report(
            &format!(
                "{text} (sort {:?}, {hits} shown)",
                sort.map(|s| s.to_string())
            ),
            &mut samples,
        );
        all.extend(samples);
    }
    report("all queries", &mut all);
}

fn report(label: &str, samples: &mut [f64]) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label}\n    p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  (n={})",
        at(0.5),
        at(0.99),
        at(1.0),
        samples.len()
    );
}
