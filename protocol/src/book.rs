//! The order book of live, verified offers every node keeps.
//!
//! - An offer is keyed by [`OfferId`] (provider, slot); a higher sequence
//!   supersedes, an equal or lower one is stale and refused.
//! - Offers drop out when they expire ([`OfferBook::expire`]); search never
//!   returns an expired offer.
//! - The book is bounded twice: at most `capacity` offers in all, and at
//!   most `per_provider` from one provider, so one peer cannot fill it.
//!   When the book is full, the offer that expires soonest is evicted to
//!   make room — unless the newcomer itself expires no later than it, in
//!   which case the newcomer is refused. A provider at its cap can only
//!   update the offers it has.
//! - The highest sequence seen of each offer is remembered after the offer
//!   leaves the book (evicted, removed), until that version would have
//!   expired: a replay of an older version that is still unexpired is
//!   stale even then. The marks are bounded too (`4 × capacity`; past it
//!   the soonest-expiring are forgotten first).

use std::collections::{BTreeSet, HashMap};

use crate::identity::PublicKey;
use crate::message::Signed;
use crate::offer::{Energy, Offer, OfferId};
use crate::query::{
    Clause, Field, Numbers, Query, SortKey, clause_matches, number_matches, text_matches,
};
use crate::time::Timestamp;

/// What [`OfferBook::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new offer.
    Inserted,
    /// Replaced the offer with this lower sequence.
    Superseded(u64),
    /// Refused: the book holds this sequence or a higher one.
    Stale(u64),
    /// Refused: already expired.
    Expired,
    /// Refused: the provider already has `per_provider` offers.
    ProviderFull,
    /// Refused: the book is full of offers that outlive this one.
    BookFull,
    /// Inserted after evicting this offer (the one expiring soonest).
    Evicted(OfferId),
}

impl InsertOutcome {
    /// Whether the offer is now in the book.
    pub fn accepted(self) -> bool {
        matches!(
            self,
            Self::Inserted | Self::Superseded(_) | Self::Evicted(_)
        )
    }
}

/// The searchable fields of one offer, compact, so a search scans a dense
/// array instead of chasing every signed offer through memory. Text fields
/// are interned lowercase; a text clause is evaluated once per distinct
/// value, then per row it is a table lookup.
#[derive(Debug, Clone, Copy)]
struct Row {
    numbers: Numbers,
    expires_at: Timestamp,
    id: OfferId,
    model: u32,
    region: u32,
    jurisdiction: u32,
    energy: Energy,
    simulated: bool,
    verified: bool,
}

/// Lowercase strings to small integers.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        let key = name.to_ascii_lowercase();
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(key.clone());
        self.ids.insert(key, id);
        id
    }

    /// For each interned name, whether `op value` holds.
    fn table(&self, op: crate::query::Op, value: &str) -> Vec<bool> {
        self.names
            .iter()
            .map(|name| text_matches(op, name, value))
            .collect()
    }
}

/// A clause compiled against the book's interners.
enum Compiled<'q> {
    Number(Field, crate::query::Op, u128),
    Model(Vec<bool>),
    Region(Vec<bool>),
    Jurisdiction(Vec<bool>),
    Energy([bool; 4]),
    Verified(bool),
    Simulated(bool),
    /// Evaluated on the full offer (provider, runtime).
    Slow(&'q Clause),
}

fn energy_index(energy: Energy) -> usize {
    match energy {
        Energy::Unknown => 0,
        Energy::Renewable => 1,
        Energy::Mixed => 2,
        Energy::Fossil => 3,
    }
}

/// A bounded book of verified offers.
#[derive(Debug)]
pub struct OfferBook {
    rows: Vec<Row>,
    offers: Vec<Signed<Offer>>,
    index: HashMap<OfferId, usize>,
    /// (expires_at, id) of every offer, soonest first.
    by_expiry: BTreeSet<(Timestamp, OfferId)>,
    per_provider_count: HashMap<PublicKey, usize>,
    models: Interner,
    regions: Interner,
    jurisdictions: Interner,
    capacity: usize,
    per_provider: usize,
    /// The highest sequence seen of each offer id and the latest expiry
    /// among the versions seen, kept after the offer leaves the book.
    marks: HashMap<OfferId, (u64, Timestamp)>,
    /// (expiry, id) of every mark, soonest first.
    marks_by_expiry: BTreeSet<(Timestamp, OfferId)>,
}

impl OfferBook {
    /// A book of at most `capacity` offers, `per_provider` per provider.
    pub fn new(capacity: usize, per_provider: usize) -> Self {
        Self {
            rows: Vec::new(),
            offers: Vec::new(),
            index: HashMap::new(),
            by_expiry: BTreeSet::new(),
            per_provider_count: HashMap::new(),
            models: Interner::default(),
            regions: Interner::default(),
            jurisdictions: Interner::default(),
            capacity: capacity.max(1),
            per_provider: per_provider.max(1),
            marks: HashMap::new(),
            marks_by_expiry: BTreeSet::new(),
        }
    }

    /// The highest sequence remembered for `id` (in the book or not).
    pub fn high_water(&self, id: &OfferId) -> Option<u64> {
        self.marks.get(id).map(|&(sequence, _)| sequence)
    }

    /// Remembers `offer` as the highest version of its id seen.
    fn mark(&mut self, id: OfferId, sequence: u64, expires_at: Timestamp) {
        let expires = match self.marks.get(&id) {
            Some(&(_, held)) => {
                self.marks_by_expiry.remove(&(held, id));
                held.max(expires_at)
            }
            None => expires_at,
        };
        self.marks.insert(id, (sequence, expires));
        self.marks_by_expiry.insert((expires, id));
        while self.marks.len() > 4 * self.capacity {
            let Some((_, oldest)) = self.marks_by_expiry.pop_first() else {
                break;
            };
            self.marks.remove(&oldest);
        }
    }

    /// Adds or updates a verified offer at time `now`.
    pub fn insert(&mut self, signed: Signed<Offer>, now: Timestamp) -> InsertOutcome {
        let offer = signed.message();
        if offer.expired(now) {
            return InsertOutcome::Expired;
        }
        let id = offer.id();
        // Stale against the highest version seen, held or gone.
        if let Some(seen) = self.high_water(&id)
            && offer.sequence <= seen
        {
            return InsertOutcome::Stale(seen);
        }
        if let Some(&at) = self.index.get(&id) {
            let held = self.offers[at].message().sequence;
            self.remove(&id);
            self.put(id, signed);
            return InsertOutcome::Superseded(held);
        }
        if self
            .per_provider_count
            .get(&offer.provider)
            .copied()
            .unwrap_or(0)
            >= self.per_provider
        {
            return InsertOutcome::ProviderFull;
        }
        if self.offers.len() >= self.capacity {
            self.expire(now);
        }
        if self.offers.len() >= self.capacity {
            let Some(&(soonest, victim)) = self.by_expiry.first() else {
                return InsertOutcome::BookFull;
            };
            if offer.expires_at <= soonest {
                return InsertOutcome::BookFull;
            }
            self.remove(&victim);
            self.put(id, signed);
            return InsertOutcome::Evicted(victim);
        }
        self.put(id, signed);
        InsertOutcome::Inserted
    }

    fn put(&mut self, id: OfferId, signed: Signed<Offer>) {
        self.compact_interners();
        let offer = signed.message();
        let row = Row {
            numbers: Numbers::of(offer),
            expires_at: offer.expires_at,
            id,
            model: self.models.intern(&offer.gpu_model),
            region: self.regions.intern(&offer.region),
            jurisdiction: self
                .jurisdictions
                .intern(offer.jurisdiction.as_deref().unwrap_or("")),
            energy: offer.energy,
            simulated: offer.simulated,
            verified: offer.verified(),
        };
        self.by_expiry.insert((offer.expires_at, id));
        let (sequence, expires_at) = (offer.sequence, offer.expires_at);
        *self.per_provider_count.entry(offer.provider).or_insert(0) += 1;
        self.index.insert(id, self.offers.len());
        self.rows.push(row);
        self.offers.push(signed);
        self.mark(id, sequence, expires_at);
    }

    /// Interned names are never removed one by one; when the tables grow
    /// well past the live offers (peers churning through unique names),
    /// rebuild them from the offers held. Amortised O(1) per insert.
    fn compact_interners(&mut self) {
        let limit = 4 * self.offers.len() + 64;
        if self.models.names.len() + self.regions.names.len() + self.jurisdictions.names.len()
            <= limit
        {
            return;
        }
        self.models = Interner::default();
        self.regions = Interner::default();
        self.jurisdictions = Interner::default();
        for (row, signed) in self.rows.iter_mut().zip(&self.offers) {
            let offer = signed.message();
            row.model = self.models.intern(&offer.gpu_model);
            row.region = self.regions.intern(&offer.region);
            row.jurisdiction = self
                .jurisdictions
                .intern(offer.jurisdiction.as_deref().unwrap_or(""));
        }
    }

    /// Removes an offer; returns it if it was there.
    pub fn remove(&mut self, id: &OfferId) -> Option<Signed<Offer>> {
        let at = self.index.remove(id)?;
        self.rows.swap_remove(at);
        let signed = self.offers.swap_remove(at);
        if let Some(moved) = self.rows.get(at) {
            self.index.insert(moved.id, at);
        }
        let offer = signed.message();
        self.by_expiry.remove(&(offer.expires_at, *id));
        if let Some(n) = self.per_provider_count.get_mut(&offer.provider) {
            *n -= 1;
            if *n == 0 {
                self.per_provider_count.remove(&offer.provider);
            }
        }
        Some(signed)
    }

    /// Drops every offer expired at `now`; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let mut dropped = 0;
        while let Some(&(expires_at, id)) = self.by_expiry.first() {
            if expires_at > now {
                break;
            }
            self.remove(&id);
            dropped += 1;
        }
        // A mark whose every version has expired guards nothing: any
        // replay of them is refused as expired.
        while let Some(&(expires_at, id)) = self.marks_by_expiry.first() {
            if expires_at > now {
                break;
            }
            self.marks_by_expiry.pop_first();
            self.marks.remove(&id);
        }
        dropped
    }

    fn compile<'q>(&self, query: &'q Query) -> Vec<Compiled<'q>> {
        query
            .clauses()
            .iter()
            .map(|clause| match clause {
                Clause::Number {
                    field, op, value, ..
                } => Compiled::Number(*field, *op, *value),
                Clause::Text {
                    field: Field::Gpu,
                    op,
                    value,
                } => Compiled::Model(self.models.table(*op, value)),
                Clause::Text {
                    field: Field::Region,
                    op,
                    value,
                } => Compiled::Region(self.regions.table(*op, value)),
                Clause::Text {
                    field: Field::Jurisdiction,
                    op,
                    value,
                } => Compiled::Jurisdiction(self.jurisdictions.table(*op, value)),
                Clause::Text {
                    field: Field::Energy,
                    op,
                    value,
                } => Compiled::Energy(
                    [
                        Energy::Unknown,
                        Energy::Renewable,
                        Energy::Mixed,
                        Energy::Fossil,
                    ]
                    .map(|e| text_matches(*op, e.as_str(), value)),
                ),
                Clause::Verified(want) => Compiled::Verified(*want),
                Clause::Simulated(want) => Compiled::Simulated(*want),
                other => Compiled::Slow(other),
            })
            .collect()
    }

    fn row_matches(&self, at: usize, compiled: &[Compiled<'_>]) -> bool {
        let row = &self.rows[at];
        let lookup = |table: &Vec<bool>, id: u32| table.get(id as usize).copied().unwrap_or(false);
        compiled.iter().all(|c| match c {
            Compiled::Number(field, op, value) => number_matches(*field, *op, *value, &row.numbers),
            Compiled::Model(table) => lookup(table, row.model),
            Compiled::Region(table) => lookup(table, row.region),
            Compiled::Jurisdiction(table) => lookup(table, row.jurisdiction),
            Compiled::Energy(table) => table[energy_index(row.energy)],
            Compiled::Verified(want) => row.verified == *want,
            Compiled::Simulated(want) => row.simulated == *want,
            Compiled::Slow(clause) => clause_matches(clause, self.offers[at].message()),
        })
    }

    /// Offers matching `query` and live at `now`, sorted by `sort` (else by
    /// id), at most `limit`.
    pub fn search(
        &self,
        query: &Query,
        sort: Option<SortKey>,
        limit: usize,
        now: Timestamp,
    ) -> Vec<&Signed<Offer>> {
        let compiled = self.compile(query);
        let mut hits: Vec<usize> = (0..self.rows.len())
            .filter(|&at| self.rows[at].expires_at > now && self.row_matches(at, &compiled))
            .collect();
        let rows = &self.rows;
        let order = |a: &usize, b: &usize| {
            let (ra, rb) = (&rows[*a], &rows[*b]);
            match sort {
                Some(key) => key
                    .compare_numbers(&ra.numbers, &rb.numbers)
                    .then_with(|| ra.id.cmp(&rb.id)),
                None => ra.id.cmp(&rb.id),
            }
        };
        if hits.len() > limit {
            if limit == 0 {
                return Vec::new();
            }
            // Partition the best `limit` first, then sort only those.
            hits.select_nth_unstable_by(limit - 1, order);
            hits.truncate(limit);
        }
        hits.sort_unstable_by(order);
        hits.into_iter().map(|at| &self.offers[at]).collect()
    }

    /// The offer with this id.
    pub fn get(&self, id: &OfferId) -> Option<&Signed<Offer>> {
        self.index.get(id).map(|&at| &self.offers[at])
    }

    /// How many offers are held.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// All offers, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Signed<Offer>> {
        self.offers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::offer::tests::sample_offer;

    fn signed(key: &Keypair, slot: u32, sequence: u64, expires: u64) -> Signed<Offer> {
        let mut offer = sample_offer(key);
        offer.slot = slot;
        offer.sequence = sequence;
        offer.expires_at = Timestamp(expires);
        Signed::sign(offer, key).unwrap()
    }

    #[test]
    fn supersede_by_sequence_and_refuse_stale() {
        let key = Keypair::from_seed(&[1; 32]);
        let mut book = OfferBook::new(10, 10);
        let now = Timestamp(2_000);
        assert_eq!(
            book.insert(signed(&key, 0, 2, 50_000), now),
            InsertOutcome::Inserted
        );
        assert_eq!(
            book.insert(signed(&key, 0, 2, 50_000), now),
            InsertOutcome::Stale(2)
        );
        assert_eq!(
            book.insert(signed(&key, 0, 1, 50_000), now),
            InsertOutcome::Stale(2)
        );
        assert_eq!(
            book.insert(signed(&key, 0, 3, 60_000), now),
            InsertOutcome::Superseded(2)
        );
        assert_eq!(book.len(), 1);
        let id = OfferId::new(&key.public(), 0);
        assert_eq!(book.get(&id).unwrap().message().sequence, 3);
    }

    #[test]
    fn a_replay_of_an_older_version_stays_stale_after_the_offer_left_the_book() {
        let keys: Vec<Keypair> = (0..3u8).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
        let mut book = OfferBook::new(2, 10);
        let now = Timestamp(2_000);
        let old = signed(&keys[0], 0, 1, 10_000);
        book.insert(old.clone(), now);
        assert_eq!(
            book.insert(signed(&keys[0], 0, 2, 12_000), now),
            InsertOutcome::Superseded(1)
        );
        let id = OfferId::new(&keys[0].public(), 0);
        // Two offers that outlive it push it out of the full book.
        book.insert(signed(&keys[1], 0, 1, 40_000), now);
        let outcome = book.insert(signed(&keys[2], 0, 1, 50_000), now);
        assert_eq!(outcome, InsertOutcome::Evicted(id));
        assert!(book.get(&id).is_none());
        // The older version, still unexpired, is refused as stale; so is
        // the evicted one itself; a removed offer is remembered too.
        assert_eq!(book.insert(old, now), InsertOutcome::Stale(2));
        assert_eq!(
            book.insert(signed(&keys[0], 0, 2, 12_000), now),
            InsertOutcome::Stale(2)
        );
        assert_eq!(book.high_water(&id), Some(2));
        let other = OfferId::new(&keys[1].public(), 0);
        book.remove(&other);
        assert_eq!(
            book.insert(signed(&keys[1], 0, 1, 40_000), now),
            InsertOutcome::Stale(1)
        );
        // A newer version is welcome, evicting the soonest-expiring.
        assert!(book.insert(signed(&keys[0], 0, 3, 60_000), now).accepted());
        // Once every version seen has expired, the mark is forgotten.
        book.expire(Timestamp(60_001));
        assert_eq!(book.high_water(&id), None);
        assert_eq!(book.high_water(&other), None);
    }

    #[test]
    fn the_marks_are_bounded_by_four_times_the_capacity() {
        let mut book = OfferBook::new(2, 100);
        let now = Timestamp(2_000);
        let key = Keypair::from_seed(&[9; 32]);
        for slot in 0..20u32 {
            // Each pushes out the one before it (later expiry).
            book.insert(signed(&key, slot, 1, 10_000 + u64::from(slot)), now);
        }
        assert_eq!(book.len(), 2);
        assert!(book.marks.len() <= 8, "{}", book.marks.len());
        // The newest marks are the ones kept.
        assert_eq!(book.high_water(&OfferId::new(&key.public(), 19)), Some(1));
        assert_eq!(book.high_water(&OfferId::new(&key.public(), 0)), None);
    }

    #[test]
    fn expired_offers_drop_out_and_never_match() {
        let key = Keypair::from_seed(&[1; 32]);
        let mut book = OfferBook::new(10, 10);
        assert_eq!(
            book.insert(signed(&key, 0, 1, 1_500), Timestamp(2_000)),
            InsertOutcome::Expired
        );
        book.insert(signed(&key, 0, 1, 5_000), Timestamp(2_000));
        book.insert(signed(&key, 1, 1, 9_000), Timestamp(2_000));
        assert_eq!(
            book.search(&Query::default(), None, 10, Timestamp(5_000))
                .len(),
            1
        );
        assert_eq!(book.expire(Timestamp(5_000)), 1);
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn full_book_evicts_the_soonest_expiring_or_refuses() {
        let keys: Vec<Keypair> = (0..4u8).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
        let mut book = OfferBook::new(3, 10);
        let now = Timestamp(2_000);
        book.insert(signed(&keys[0], 0, 1, 30_000), now);
        book.insert(signed(&keys[1], 0, 1, 10_000), now);
        book.insert(signed(&keys[2], 0, 1, 20_000), now);
        // Outlives the soonest (10 000): evicts it.
        let outcome = book.insert(signed(&keys[3], 0, 1, 40_000), now);
        assert_eq!(
            outcome,
            InsertOutcome::Evicted(OfferId::new(&keys[1].public(), 0))
        );
        // Expires before everything held: refused.
        assert_eq!(
            book.insert(signed(&keys[1], 1, 1, 5_000), now),
            InsertOutcome::BookFull
        );
        assert_eq!(book.len(), 3);
    }

    #[test]
    fn one_provider_cannot_fill_the_book() {
        let key = Keypair::from_seed(&[1; 32]);
        let mut book = OfferBook::new(100, 2);
        let now = Timestamp(2_000);
        assert!(book.insert(signed(&key, 0, 1, 50_000), now).accepted());
        assert!(book.insert(signed(&key, 1, 1, 50_000), now).accepted());
        assert_eq!(
            book.insert(signed(&key, 2, 1, 50_000), now),
            InsertOutcome::ProviderFull
        );
        // Updates to held slots still go through.
        assert!(book.insert(signed(&key, 1, 2, 50_000), now).accepted());
        let other = Keypair::from_seed(&[2; 32]);
        assert!(book.insert(signed(&other, 0, 1, 50_000), now).accepted());
    }

    #[test]
    fn search_filters_sorts_and_limits() {
        let key = Keypair::from_seed(&[1; 32]);
        let mut book = OfferBook::new(100, 100);
        let now = Timestamp(2_000);
        for slot in 0..10u32 {
            let mut offer = sample_offer(&key);
            offer.slot = slot;
            offer.price_per_gpu_hour = crate::Amount(1_000_000 + u64::from(slot) * 100_000);
            offer.gpu_model = if slot % 2 == 0 {
                "H100".into()
            } else {
                "A100".into()
            };
            book.insert(Signed::sign(offer, &key).unwrap(), now);
        }
        let query = Query::parse("gpu=H100 price<=1.7").unwrap();
        let hits = book.search(&query, Some("-price".parse().unwrap()), 2, now);
        let prices: Vec<u64> = hits
            .iter()
            .map(|s| s.message().price_per_gpu_hour.0)
            .collect();
        assert_eq!(prices, vec![1_600_000, 1_400_000]);
        let all = book.search(&query, Some("price".parse().unwrap()), 100, now);
        assert_eq!(all.len(), 4);
    }
}

#[cfg(test)]
mod equivalence {
    use super::*;
    use crate::identity::Keypair;
    use crate::offer::tests::sample_offer;
    use proptest::prelude::*;

    const QUERIES: [&str; 10] = [
        "",
        "gpu=h100",
        "gpu~10 region!=eu",
        "region=US-east vram>=40",
        "jurisdiction=DE price<=2",
        "energy=renewable tflops>30",
        "!verified count>=2 tflop_price<0.05",
        "provider~0 runtime=process",
        "cc>=8.9 bandwidth<2500",
        "gpu!=A100 simulated total<=4",
    ];

    proptest! {
        /// The compact index answers exactly what `Query::matches` says,
        /// through inserts, supersedes, removals and interner rebuilds.
        #[test]
        fn index_agrees_with_the_query_on_full_offers(
            offers in prop::collection::vec((0usize..4, 0usize..4, 0u32..6, 1u64..4_000_000, 1u64..100_000, 0u32..9, prop::bool::ANY), 1..60),
            removals in prop::collection::vec(0usize..60, 0..20),
        ) {
            let models = ["H100", "h100", "A100", "L40S"];
            let regions = ["EU", "US-EAST", "us-east", "APAC"];
            let keys: Vec<Keypair> = (0..3u8).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
            let mut book = OfferBook::new(1000, 1000);
            let now = Timestamp(2_000);
            let mut ids = Vec::new();
            for (i, (m, r, slot, price, tflops, free, renewable)) in offers.iter().enumerate() {
                let key = &keys[i % 3];
                let mut offer = sample_offer(key);
                offer.slot = *slot;
                offer.sequence = i as u64 + 1;
                offer.gpu_model = models[*m].into();
                offer.region = regions[*r].into();
                offer.price_per_gpu_hour = crate::Amount(*price);
                offer.benchmark.fp32_mtflops = *tflops;
                offer.gpu_free = (*free).min(offer.gpu_total);
                offer.jurisdiction = if *r == 0 { Some("DE".into()) } else { None };
                offer.energy = if *renewable { Energy::Renewable } else { Energy::Fossil };
                ids.push(offer.id());
                book.insert(Signed::sign(offer, key).unwrap(), now);
            }
            for r in removals {
                if let Some(id) = ids.get(r) {
                    book.remove(id);
                }
            }
            for text in QUERIES {
                let query = Query::parse(text).unwrap();
                let mut expected: Vec<OfferId> = book.iter().filter(|s| query.matches(s.message())).map(|s| s.message().id()).collect();
                expected.sort();
                let got: Vec<OfferId> = book.search(&query, None, usize::MAX, now).iter().map(|s| s.message().id()).collect();
                prop_assert_eq!(got, expected, "{}", text);
            }
            for id in &ids {
                if let Some(signed) = book.get(id) {
                    prop_assert_eq!(signed.message().id(), *id);
                }
            }
        }
    }

    #[test]
    fn interners_are_rebuilt_when_names_churn() {
        let key = Keypair::from_seed(&[1; 32]);
        let mut book = OfferBook::new(4, 4);
        let now = Timestamp(2_000);
        for i in 0..500u64 {
            let mut offer = sample_offer(&key);
            offer.sequence = i + 1;
            offer.gpu_model = format!("M{i}");
            book.insert(Signed::sign(offer, &key).unwrap(), now);
        }
        assert_eq!(book.len(), 1);
        assert!(book.models.names.len() <= 4 * book.len() + 64 + 1);
        let hits = book.search(&Query::parse("gpu=M499").unwrap(), None, 10, now);
        assert_eq!(hits.len(), 1);
    }
}
