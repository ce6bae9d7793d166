//! What a requester can pay for: its balance on the ledger as last read
//! (trusted for [`BALANCE_TTL_MS`]), against the escrow of the holds and
//! not-yet-started leases it has here. The router reads balances; this
//! only remembers and compares them.

use agora_protocol::{Amount, Bid, LeaseTerms, Order, PublicKey, Signed, Timestamp};

use super::{Bidder, ReservationKind};

/// How long a requester's balance read from the ledger is trusted.
pub const BALANCE_TTL_MS: u64 = 15_000;

/// How long a failed balance read stands before it is tried again.
pub const BALANCE_ERROR_TTL_MS: u64 = 2_000;

/// Requesters whose balances are remembered at once (the oldest reading
/// goes first).
pub const MAX_KNOWN_BALANCES: usize = 4096;

/// Why a requester cannot be seen to pay for one more reservation.
pub(super) enum Shortfall {
    /// Its balance is not known (or no longer trusted).
    Unknown,
    /// It cannot, and why.
    Short(String),
}

/// A requester's balance as last read from the ledger.
#[derive(Debug, Clone)]
pub(super) struct Known {
    /// The balance, or why it could not be read.
    pub(super) balance: Result<Amount, String>,
    /// When it was read.
    pub(super) at: Timestamp,
}

impl Known {
    pub(super) fn fresh(&self, now: Timestamp) -> bool {
        let ttl = if self.balance.is_ok() {
            BALANCE_TTL_MS
        } else {
            BALANCE_ERROR_TTL_MS
        };
        now.ms_since(self.at) < ttl
    }
}

impl Bidder {
    /// Whether `order`'s requester can pay for `bid` on top of what it
    /// holds here: the bid's escrow, or why not.
    pub(super) fn afford(
        &self,
        order: &Order,
        bid: &Bid,
        now: Timestamp,
    ) -> Result<Amount, Shortfall> {
        let cost = LeaseTerms::required_escrow(
            bid.price_per_gpu_hour,
            bid.gpu_count,
            order.max_duration_secs,
        )
        .ok_or_else(|| Shortfall::Short("price × GPUs × duration overflows".into()))?;
        self.cover(&order.requester, cost, now).map(|()| cost)
    }

    /// Whether `requester`'s balance covers `cost` more on top of what it
    /// holds here.
    pub(super) fn cover(
        &self,
        requester: &PublicKey,
        cost: Amount,
        now: Timestamp,
    ) -> Result<(), Shortfall> {
        let balance = match self.balances.get(requester) {
            Some(known) if known.fresh(now) => &known.balance,
            _ => return Err(Shortfall::Unknown),
        };
        let balance = match balance {
            Ok(balance) => *balance,
            Err(e) => {
                return Err(Shortfall::Short(format!(
                    "this provider cannot read your balance on the ledger ({e}); try again"
                )));
            }
        };
        let committed = self.committed(requester, now);
        match committed.checked_add(cost) {
            Some(total) if total <= balance => Ok(()),
            _ => Err(Shortfall::Short(format!(
                "your balance on the ledger is {balance} AGR; this escrow is {cost} AGR and \
                 your bids and unstarted leases here already take {committed} AGR"
            ))),
        }
    }

    /// The escrow `requester`'s live holds and not-yet-started leases here
    /// stand for: what its balance must still cover.
    pub fn committed(&self, requester: &PublicKey, now: Timestamp) -> Amount {
        self.reservations
            .values()
            .filter(|r| {
                r.requester == *requester
                    && r.live(now)
                    && (r.kind == ReservationKind::Hold || r.start_by.is_some())
            })
            .fold(Amount::ZERO, |sum, r| {
                sum.checked_add(r.escrow).unwrap_or(Amount(u64::MAX))
            })
    }

    /// Takes in `requester`'s balance as read from the ledger at `now`
    /// (or why it could not be read: the last balance read then stands, if
    /// there is one).
    pub fn set_balance(
        &mut self,
        requester: PublicKey,
        balance: Result<Amount, String>,
        now: Timestamp,
    ) {
        let balance = match (balance, self.balances.get(&requester)) {
            (Ok(balance), _) => Ok(balance),
            (
                Err(_),
                Some(Known {
                    balance: Ok(last), ..
                }),
            ) => Ok(*last),
            (Err(e), _) => Err(e),
        };
        if !self.balances.contains_key(&requester)
            && self.balances.len() >= MAX_KNOWN_BALANCES
            && let Some(oldest) = self
                .balances
                .iter()
                .min_by_key(|(_, k)| k.at)
                .map(|(key, _)| *key)
        {
            self.balances.remove(&oldest);
        }
        self.balances.insert(requester, Known { balance, at: now });
    }

    /// Whether `proposal` must wait for its requester's balance to be read
    /// from the ledger before it is decided: it would lease GPUs no live
    /// bid of its requester holds, and that balance is not known (or no
    /// longer trusted).
    pub fn proposal_needs_balance(&self, proposal: &Signed<LeaseTerms>, now: Timestamp) -> bool {
        let terms = proposal.message();
        self.held_for(terms, now).is_none()
            && !self
                .balances
                .get(&terms.requester)
                .is_some_and(|known| known.fresh(now))
    }
}
