//! The contract's BLAKE3, SHA-512 and ed25519 against the Rust crates the
//! nodes use, on anvil: the escrow's checks are only as good as these.

use agora_contracts_evm::anvil::AnvilOptions;
use agora_contracts_evm::bindings::CryptoHarness;
use agora_protocol::{Keypair, Kind, SignedEnvelope};
use alloy::primitives::{Address, Bytes, FixedBytes};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sha2::Digest;

use crate::support::{anvil_or_skip, deploy_code, runtime, wallet_provider};

/// The group order L of ed25519, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

async fn call<C: SolCall>(provider: &impl Provider, to: Address, call: C) -> C::Return {
    let tx = TransactionRequest::default()
        .to(to)
        .input(Bytes::from(call.abi_encode()).into());
    let out = provider.call(tx).await.unwrap();
    C::abi_decode_returns(&out).unwrap()
}

async fn verifies(
    provider: &impl Provider,
    to: Address,
    key: &[u8; 32],
    sig: &[u8; 64],
    message: &[u8],
) -> bool {
    let mut r = [0; 32];
    let mut s = [0; 32];
    r.copy_from_slice(&sig[..32]);
    s.copy_from_slice(&sig[32..]);
    call(
        provider,
        to,
        CryptoHarness::verifyCall {
            publicKey: FixedBytes(*key),
            r: FixedBytes(r),
            s: FixedBytes(s),
            message: message.to_vec().into(),
        },
    )
    .await
}

/// A signature by `key` over `message` the way envelopes sign (the
/// message is the namespace plus the body).
fn sign(key: &Keypair, body: &[u8]) -> (Vec<u8>, [u8; 64]) {
    let envelope = SignedEnvelope::seal_bytes(Kind::UsageReceipt, body.to_vec(), key);
    let mut message = Kind::UsageReceipt.namespace().to_vec();
    message.extend_from_slice(body);
    (message, envelope.signature().0)
}

/// S + L: the same scalar, not canonical.
fn plus_l(sig: &[u8; 64]) -> [u8; 64] {
    let mut out = *sig;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        out[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

#[test]
fn the_contracts_hashes_and_signature_checks_agree_with_the_nodes() {
    let runtime = runtime();
    let Some(anvil) = anvil_or_skip(&AnvilOptions::default()) else {
        return;
    };
    let (provider, harness) = runtime.block_on(async {
        let provider = wallet_provider(&anvil).await;
        let harness = deploy_code(&provider, CryptoHarness::BYTECODE.clone()).await;
        (provider, harness)
    });

    // BLAKE3 and SHA-512 over every length around the block and chunk
    // boundaries, and beyond one chunk.
    runtime.block_on(async {
        let data: Vec<u8> = (0..4200u32).map(|i| (i % 251) as u8).collect();
        let lengths = (0..=130).chain([
            191, 192, 193, 255, 256, 300, 511, 512, 1023, 1024, 1025, 2047, 2048, 2049, 3072, 3073,
            4096, 4200,
        ]);
        for n in lengths {
            let input = &data[..n];
            let got = call(
                &provider,
                harness,
                CryptoHarness::blake3Call {
                    data: input.to_vec().into(),
                },
            )
            .await;
            assert_eq!(
                got.0,
                *blake3::hash(input).as_bytes(),
                "blake3 of {n} bytes"
            );
            let got = call(
                &provider,
                harness,
                CryptoHarness::sha512Call {
                    data: input.to_vec().into(),
                },
            )
            .await;
            let want = sha2::Sha512::digest(input);
            assert_eq!(
                [got._0.0, got._1.0].concat(),
                want.as_slice(),
                "sha512 of {n} bytes"
            );
        }
    });

    // Every honest signature verifies; any change to it, its message or
    // its key does not.
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 0..700),
        any::<u16>(),
    );
    runner
        .run(&strategy, |(seed, body, flip)| {
            runtime.block_on(async {
                let key = Keypair::from_seed(&seed);
                let public = *key.public().as_bytes();
                let (message, sig) = sign(&key, &body);
                prop_assert!(verifies(&provider, harness, &public, &sig, &message).await);
                let mut bad_sig = sig;
                bad_sig[usize::from(flip) % 64] ^= 1 << (flip % 8);
                prop_assert!(!verifies(&provider, harness, &public, &bad_sig, &message).await);
                let mut bad_message = message.clone();
                let at = usize::from(flip) % bad_message.len();
                bad_message[at] ^= 1 << (flip % 8);
                prop_assert!(!verifies(&provider, harness, &public, &sig, &bad_message).await);
                let other = *Keypair::from_seed(&[seed[0].wrapping_add(1); 32])
                    .public()
                    .as_bytes();
                prop_assert!(!verifies(&provider, harness, &other, &sig, &message).await);
                Ok(())
            })
        })
        .unwrap();

    // What dalek's verify_strict refuses, the contract refuses.
    runtime.block_on(async {
        let key = Keypair::from_seed(&[9; 32]);
        let public = *key.public().as_bytes();
        let (message, sig) = sign(&key, b"lease bytes");
        assert!(verifies(&provider, harness, &public, &sig, &message).await);
        // A non-canonical S (S + L).
        assert!(!verifies(&provider, harness, &public, &plus_l(&sig), &message).await);
        // Small-order keys: the identity and the point of order 2, whose
        // "signatures" R = identity, S = 0 hold for any message under the
        // cofactorless equation.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut order2 = [0xffu8; 32];
        order2[0] = 0xec;
        order2[31] = 0x7f;
        let mut trivial = [0u8; 64];
        trivial[..32].copy_from_slice(&identity);
        for weak in [identity, order2] {
            assert!(!verifies(&provider, harness, &weak, &trivial, &message).await);
        }
        // A key whose y is not below p (p + 1 encodes y = 1 again).
        let mut y_over_p = [0xffu8; 32];
        y_over_p[0] = 0xee;
        y_over_p[31] = 0x7f;
        assert!(!verifies(&provider, harness, &y_over_p, &sig, &message).await);
        // The gas one verification costs on a lease-sized message.
        let (message, sig) = sign(&key, &[5u8; 280]);
        let mut r = [0; 32];
        let mut s = [0; 32];
        r.copy_from_slice(&sig[..32]);
        s.copy_from_slice(&sig[32..]);
        let measured = call(
            &provider,
            harness,
            CryptoHarness::verifyGasCall {
                publicKey: FixedBytes(public),
                r: FixedBytes(r),
                s: FixedBytes(s),
                message: message.into(),
            },
        )
        .await;
        assert!(measured.ok);
        eprintln!(
            "ed25519 verify of a {}-byte message: {} gas",
            280 + Kind::UsageReceipt.namespace().len(),
            measured.gasUsed
        );
    });
}
