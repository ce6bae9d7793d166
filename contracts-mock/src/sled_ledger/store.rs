//! The ledger's state in memory and its layout on disk.

use std::collections::HashMap;

use agora_protocol::ledger::{EscrowState, Supply};
use agora_protocol::{AccountId, Amount, CoSigned, Lease, LeaseId, PublicKey, Timestamp};

const ACCOUNT: u8 = b'a';
const LEASE: u8 = b'l';
const ESCROW: u8 = b'e';
pub(super) const DEPOSITED: &[u8] = b"m:deposited";

/// Everything the ledger knows, as the writer holds it.
#[derive(Default)]
pub(super) struct State {
    pub(super) balances: HashMap<AccountId, Amount>,
    pub(super) leases: HashMap<LeaseId, (Lease, EscrowState)>,
    pub(super) deposited: u128,
    /// Sum of balances, kept as operations apply.
    pub(super) balance_total: u128,
    /// Sum of outstanding escrow.
    pub(super) escrow_total: u128,
}

impl State {
    pub(super) fn supply(&self) -> Supply {
        Supply {
            deposited: self.deposited,
            balances: self.balance_total,
            escrowed: self.escrow_total,
        }
    }

    pub(super) fn balance(&self, account: &AccountId) -> Amount {
        self.balances.get(account).copied().unwrap_or(Amount::ZERO)
    }
}

pub(super) fn account_key(account: &AccountId) -> Vec<u8> {
    prefixed(ACCOUNT, account.as_bytes())
}

pub(super) fn lease_key(lease: &LeaseId) -> Vec<u8> {
    prefixed(LEASE, &lease.0)
}

pub(super) fn escrow_key(lease: &LeaseId) -> Vec<u8> {
    prefixed(ESCROW, &lease.0)
}

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(prefix);
    key.extend_from_slice(rest);
    key
}

/// Length of a stored escrow record.
const ESCROW_LEN: usize = 8 + 8 + 1 + 1 + 8 + 4 + 8;

/// The part of an escrow its lease does not fix, fixed-width big-endian:
/// settled u64 ‖ last sequence u64 ‖ final settled u8 ‖ closed u8 ‖
/// refunded u64 ‖ ops u32 ‖ closable at u64. The rest (parties, amount,
/// end) comes from the stored lease.
pub(super) fn encode_escrow(state: &EscrowState) -> [u8; ESCROW_LEN] {
    let mut out = [0u8; ESCROW_LEN];
    out[0..8].copy_from_slice(&state.settled.0.to_be_bytes());
    out[8..16].copy_from_slice(&state.last_sequence.to_be_bytes());
    out[16] = u8::from(state.final_settled);
    out[17] = u8::from(state.refunded.is_some());
    out[18..26].copy_from_slice(&state.refunded.unwrap_or(Amount::ZERO).0.to_be_bytes());
    out[26..30].copy_from_slice(&state.ops.to_be_bytes());
    out[30..38].copy_from_slice(&state.closable_at.0.to_be_bytes());
    out
}

/// Rebuilds an escrow from its lease and its stored record.
fn decode_escrow(lease: &Lease, bytes: &[u8]) -> Result<EscrowState, String> {
    let bytes: &[u8; ESCROW_LEN] = bytes
        .try_into()
        .map_err(|_| format!("escrow record is {} bytes, not {ESCROW_LEN}", bytes.len()))?;
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(word)
    };
    let flag = |at: usize| match bytes[at] {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(format!("escrow flag byte {at} is {other}")),
    };
    let terms = lease.terms();
    let state = EscrowState {
        lease_id: lease.id(),
        requester: terms.requester,
        provider: terms.provider,
        escrow: terms.escrow,
        settled: Amount(u64_at(0)),
        last_sequence: u64_at(8),
        final_settled: flag(16)?,
        ends_at: terms.ends_at(),
        closable_at: Timestamp(u64_at(30)),
        refunded: flag(17)?.then(|| Amount(u64_at(18))),
        ops: u32::from_be_bytes([bytes[26], bytes[27], bytes[28], bytes[29]]),
    };
    if state.settled > state.escrow {
        return Err(format!(
            "settled {} exceeds escrow {}",
            state.settled, state.escrow
        ));
    }
    Ok(state)
}

/// Loads the whole state and checks that it adds up.
pub(super) fn load(db: &sled::Db) -> Result<State, String> {
    let mut state = State::default();
    let mut escrows: HashMap<LeaseId, sled::IVec> = HashMap::new();
    let mut leases: HashMap<LeaseId, Lease> = HashMap::new();
    for entry in db.iter() {
        let (key, value) = entry.map_err(|e| format!("reading the store: {e}"))?;
        let bad = |what: &str| format!("key {}: {what}", hex::encode(&key));
        match key.first() {
            Some(&ACCOUNT) => {
                let account = PublicKey::from_bytes(&key[1..]).map_err(|e| bad(&e.to_string()))?;
                let bytes: [u8; 8] = value
                    .as_ref()
                    .try_into()
                    .map_err(|_| bad("balance is not 8 bytes"))?;
                let balance = u64::from_be_bytes(bytes);
                state.balance_total += u128::from(balance);
                state.balances.insert(account, Amount(balance));
            }
            Some(&LEASE) => {
                let cosigned = CoSigned::decode(&value).map_err(|e| bad(&e.to_string()))?;
                let lease = Lease::verify(cosigned).map_err(|e| bad(&e.to_string()))?;
                leases.insert(lease.id(), lease);
            }
            Some(&ESCROW) => {
                let id: [u8; 32] = key[1..]
                    .try_into()
                    .map_err(|_| bad("lease id is not 32 bytes"))?;
                escrows.insert(LeaseId(id), value);
            }
            _ if key.as_ref() == DEPOSITED => {
                let bytes: [u8; 16] = value
                    .as_ref()
                    .try_into()
                    .map_err(|_| bad("total is not 16 bytes"))?;
                state.deposited = u128::from_be_bytes(bytes);
            }
            _ => return Err(bad("unknown key")),
        }
    }
    for (id, record) in escrows {
        let lease = leases
            .remove(&id)
            .ok_or_else(|| format!("escrow {id} has no lease"))?;
        let escrow = decode_escrow(&lease, &record).map_err(|e| format!("escrow {id}: {e}"))?;
        state.escrow_total += u128::from(escrow.outstanding().0);
        state.leases.insert(id, (lease, escrow));
    }
    if let Some(id) = leases.keys().next() {
        return Err(format!("lease {id} has no escrow"));
    }
    let supply = state.supply();
    if !supply.conserved() {
        return Err(format!(
            "balances {} + escrow {} != deposits {}",
            supply.balances, supply.escrowed, supply.deposited
        ));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use agora_protocol::ledger::conformance::lease;
    use agora_protocol::ledger::rules::plan_lock;
    use agora_protocol::{Amount, Keypair, Timestamp};

    use super::{decode_escrow, encode_escrow};

    #[test]
    fn escrow_records_round_trip_and_reject_garbage() {
        let (requester, provider) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let lease = lease(
            &requester,
            &provider,
            Amount(3_600_000),
            2,
            600,
            Timestamp(1_000),
            1,
        );
        let open = plan_lock(&lease, Amount(10_000_000), Timestamp(1_000), 30_000)
            .unwrap()
            .state;
        let closed = agora_protocol::ledger::EscrowState {
            settled: Amount(300_000),
            last_sequence: 7,
            final_settled: true,
            refunded: Some(Amount(900_000)),
            ops: 9,
            ..open.clone()
        };
        for state in [open, closed] {
            assert_eq!(
                decode_escrow(&lease, &encode_escrow(&state)).unwrap(),
                state
            );
        }
        assert!(decode_escrow(&lease, &[0; 5]).is_err());
        let mut bad_flag = encode_escrow(
            &plan_lock(&lease, Amount(10_000_000), Timestamp(1_000), 0)
                .unwrap()
                .state,
        );
        bad_flag[16] = 7;
        assert!(decode_escrow(&lease, &bad_flag).is_err());
    }
}
