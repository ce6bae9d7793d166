//! The node's store under a crash loop: a requester is killed with
//! SIGKILL at random moments while jobs are being submitted, again and
//! again; after every restart, every job it acknowledged (answered 202)
//! is there, with the spec it was given.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agora_client::api::SubmitJob;

use crate::support::{fund, spec, testnet};

/// Kill-and-restart cycles.
const CYCLES: usize = 12;

/// A small deterministic generator (xorshift), seeded and printed so a
/// failing run can be repeated with `AGORA_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_job_survives_kill_9_at_random_moments() {
    let seed = std::env::var("AGORA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("crash loop seed: AGORA_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let (_dir, mut net) = testnet(0, 1).await;
    fund(&net.client("requester-0").unwrap()).await;
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut writes_at_kill = Vec::new();
    for cycle in 0..CYCLES {
        let client = net.client("requester-0").unwrap();
        // Submissions back to back until the kill; each 202 is recorded.
        let writer = tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let name = format!("c{cycle}-{i}");
                let submit = SubmitJob {
                    spec: spec(&name),
                    offer: None,
                };
                match client.submit_job(&submit).await {
                    Ok(job) => acked.push((job.id, name)),
                    Err(_) => break,
                }
            }
            acked
        });
        let after = Duration::from_millis(100 + rng.next() % 900);
        tokio::time::sleep(after).await;
        net.kill("requester-0").await.unwrap();
        let acked = writer.await.unwrap();
        writes_at_kill.push(acked.len());
        acknowledged.extend(acked);
        net.restart("requester-0").await.unwrap();
        // Everything acknowledged in this and every earlier cycle.
        let client = net.client("requester-0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for (id, name) in &acknowledged {
            let job = loop {
                match client.job(id).await {
                    Ok(job) => break job,
                    Err(e) if Instant::now() < deadline && e.status().is_none() => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!(
                        "cycle {cycle} (seed {seed}): job {id} ({name}) was acknowledged and is gone after kill -9: {e}\n{}",
                        net.log_tails(20)
                    ),
                }
            };
            assert_eq!(
                job.name.as_deref(),
                Some(name.as_str()),
                "cycle {cycle}: {job:#?}"
            );
        }
    }
    eprintln!(
        "crash loop: {CYCLES} kill -9 cycles, {} acknowledged submissions all present (per cycle: {writes_at_kill:?})",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() >= CYCLES,
        "too few writes to mean anything: {writes_at_kill:?}"
    );
    net.down().await.unwrap();
}
