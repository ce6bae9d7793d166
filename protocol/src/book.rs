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

use std::collections::{BTreeSet, HashMap};

use crate::identity::PublicKey;
use crate::message::Signed;
use crate::offer::{Offer, OfferId};
use crate::query::{Query, SortKey};
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

/// A bounded book of verified offers.
#[derive(Debug)]
pub struct OfferBook {
    offers: HashMap<OfferId, Signed<Offer>>,
    /// (expires_at, id) of every offer, soonest first.
    by_expiry: BTreeSet<(Timestamp, OfferId)>,
    per_provider_count: HashMap<PublicKey, usize>,
    capacity: usize,
    per_provider: usize,
}

impl OfferBook {
    /// A book of at most `capacity` offers, `per_provider` per provider.
    pub fn new(capacity: usize, per_provider: usize) -> Self {
        Self {
            offers: HashMap::new(),
            by_expiry: BTreeSet::new(),
            per_provider_count: HashMap::new(),
            capacity: capacity.max(1),
            per_provider: per_provider.max(1),
        }
    }

    /// Adds or updates a verified offer at time `now`.
    pub fn insert(&mut self, signed: Signed<Offer>, now: Timestamp) -> InsertOutcome {
        let offer = signed.message();
        if offer.expired(now) {
            return InsertOutcome::Expired;
        }
        let id = offer.id();
        if let Some(current) = self.offers.get(&id) {
            let held = current.message().sequence;
            if offer.sequence <= held {
                return InsertOutcome::Stale(held);
            }
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
        let offer = signed.message();
        self.by_expiry.insert((offer.expires_at, id));
        *self.per_provider_count.entry(offer.provider).or_insert(0) += 1;
        self.offers.insert(id, signed);
    }

    /// Removes an offer; returns it if it was there.
    pub fn remove(&mut self, id: &OfferId) -> Option<Signed<Offer>> {
        let signed = self.offers.remove(id)?;
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
        dropped
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
        let mut hits: Vec<&Signed<Offer>> = self
            .offers
            .values()
            .filter(|s| !s.message().expired(now) && query.matches(s.message()))
            .collect();
        let order = |a: &&Signed<Offer>, b: &&Signed<Offer>| match sort {
            Some(key) => key.compare(a.message(), b.message()),
            None => a.message().id().cmp(&b.message().id()),
        };
        if hits.len() > limit {
            // Partition the best `limit` first, then sort only those.
            hits.select_nth_unstable_by(limit, order);
            hits.truncate(limit);
        }
        hits.sort_unstable_by(order);
        hits
    }

    /// The offer with this id.
    pub fn get(&self, id: &OfferId) -> Option<&Signed<Offer>> {
        self.offers.get(id)
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
        self.offers.values()
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
