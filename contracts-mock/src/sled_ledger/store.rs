//! The ledger's state in memory and its layout on disk.

use std::collections::HashMap;

use agora_protocol::ledger::{EscrowState, Supply};
use agora_protocol::{AccountId, Amount, CoSigned, Lease, LeaseId, PublicKey};

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

pub(super) fn encode_escrow(state: &EscrowState) -> Vec<u8> {
    // EscrowState holds only numbers, ids and keys: serialization cannot fail.
    serde_json::to_vec(state).unwrap_or_default()
}

/// Loads the whole state and checks that it adds up.
pub(super) fn load(db: &sled::Db) -> Result<State, String> {
    let mut state = State::default();
    let mut escrows: HashMap<LeaseId, EscrowState> = HashMap::new();
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
                let escrow: EscrowState =
                    serde_json::from_slice(&value).map_err(|e| bad(&e.to_string()))?;
                escrows.insert(escrow.lease_id, escrow);
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
    for (id, escrow) in escrows {
        let lease = leases
            .remove(&id)
            .ok_or_else(|| format!("escrow {id} has no lease"))?;
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
