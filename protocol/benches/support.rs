//! Shared fixtures for the protocol benchmarks.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use agora_protocol::{
    Amount, Benchmark, BenchmarkMethod, Energy, Keypair, Offer, OfferBook, Signed, Timestamp,
};

pub const MODELS: [&str; 6] = ["H100", "A100", "L40S", "RTX4090", "H200", "MI300X"];
pub const REGIONS: [&str; 5] = ["EU", "US-EAST", "US-WEST", "APAC", "SA"];

/// A small deterministic PRNG (xorshift), so the book is the same every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A book of `n` signed offers from `n / 50` providers.
pub fn book(n: usize) -> OfferBook {
    let providers: Vec<Keypair> = (0..n.div_ceil(50))
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            Keypair::from_seed(&seed)
        })
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut book = OfferBook::new(n, 64);
    for i in 0..n {
        let key = &providers[i / 50];
        let model = MODELS[rng.below(MODELS.len() as u64) as usize];
        let total = 1 + rng.below(8) as u32;
        let offer = Offer {
            limits: agora_protocol::SandboxLimits::default(),
            network: false,
            provider: key.public(),
            slot: (i % 50) as u32,
            sequence: 1,
            gpu_model: model.into(),
            vram_mib: [24, 40, 48, 80, 141][rng.below(5) as usize] * 1024,
            compute_capability: [80, 86, 89, 90][rng.below(4) as usize],
            benchmark: Benchmark {
                fp32_mtflops: 10_000 + rng.below(90_000),
                fp16_mtflops: 0,
                memory_bandwidth_mbps: 1_000_000 + rng.below(3_000_000),
                method: BenchmarkMethod::Measured,
                method_detail: "bench".into(),
                measured_at: Timestamp(0),
            },
            gpu_total: total,
            gpu_free: rng.below(u64::from(total) + 1) as u32,
            price_per_gpu_hour: Amount(200_000 + rng.below(4_000_000)),
            region: REGIONS[rng.below(REGIONS.len() as u64) as usize].into(),
            jurisdiction: None,
            energy: [Energy::Renewable, Energy::Mixed, Energy::Fossil][rng.below(3) as usize],
            simulated: false,
            created_at: Timestamp(0),
            expires_at: Timestamp(3_600_000),
            runtimes: vec!["process".into()],
        };
        book.insert(Signed::sign(offer, key).unwrap(), Timestamp(1));
    }
    book
}
