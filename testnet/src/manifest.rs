//! `DIR/testnet.json`, which lists everything a testnet runs, and
//! `DATA/node.json`, which a node writes when it is ready.

use std::path::{Path, PathBuf};

use agora_client::api::Role;
use agora_protocol::PublicKey;
use serde::{Deserialize, Serialize};

use crate::error::TestnetError;

/// The file name of the manifest in a testnet directory.
pub const MANIFEST_FILE: &str = "testnet.json";

/// `DIR/testnet.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The testnet directory, absolute.
    pub dir: PathBuf,
    /// The mock chain.
    pub chain: ChainEntry,
    /// The nodes, in start order (the first is everyone's bootstrap peer).
    pub nodes: Vec<NodeEntry>,
}

/// The mock chain of a testnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Process id.
    pub pid: u32,
    /// Its sled store.
    pub data_dir: PathBuf,
    /// stdout and stderr.
    pub log: PathBuf,
    /// On an EVM chain (`--ledger evm`): where the escrow is. Absent: the
    /// mock chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evm: Option<EvmChain>,
}

/// The escrow a testnet deployed on its anvil.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvmChain {
    /// Chain id.
    pub chain_id: u64,
    /// The escrow contract.
    pub escrow: String,
    /// Its token (an `AgoraTestToken`).
    pub token: String,
}

/// One node of a testnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// `provider-0`, `requester-0`, …
    pub name: String,
    /// Its role.
    pub role: Role,
    /// libp2p peer id.
    pub peer_id: String,
    /// Ledger account.
    pub account: PublicKey,
    /// API base URL, `http://127.0.0.1:PORT`.
    pub api_url: String,
    /// API bearer token.
    pub token: String,
    /// libp2p listen addresses, each ending in `/p2p/PEER_ID`.
    pub listen_addrs: Vec<String>,
    /// `agorad --data`.
    pub data_dir: PathBuf,
    /// `agorad --config`.
    pub config: PathBuf,
    /// Process id.
    pub pid: u32,
    /// stdout and stderr.
    pub log: PathBuf,
}

/// `DATA/node.json`: written by `agorad` once its API and p2p listeners are
/// up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReady {
    /// libp2p peer id.
    pub peer_id: String,
    /// Ledger account.
    pub account: PublicKey,
    /// Role.
    pub role: Role,
    /// API base URL.
    pub api_url: String,
    /// libp2p listen addresses.
    pub listen_addrs: Vec<String>,
    /// Process id.
    pub pid: u32,
}

impl Manifest {
    /// The manifest path of testnet directory `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    /// Reads `DIR/testnet.json`.
    pub fn load(dir: &Path) -> Result<Self, TestnetError> {
        read_json(&Self::path(dir))
    }

    /// Writes `DIR/testnet.json` atomically (temp file, then rename).
    pub fn save(&self) -> Result<(), TestnetError> {
        let path = Self::path(&self.dir);
        let text = serde_json::to_string_pretty(self).map_err(|e| TestnetError::BadFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let tmp = self.dir.join(format!(".{MANIFEST_FILE}.tmp"));
        std::fs::write(&tmp, text + "\n").map_err(|e| TestnetError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| TestnetError::io(&path, e))
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The nodes of `role`, in start order.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &NodeEntry> {
        self.nodes.iter().filter(move |n| n.role == role)
    }
}

/// Reads and parses a JSON file.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TestnetError> {
    let text = std::fs::read_to_string(path).map_err(|e| TestnetError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TestnetError::BadFile {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_json_in_the_documented_form_parses() {
        let key = agora_protocol::Keypair::from_seed(&[7; 32]).public();
        let text = format!(
            r#"{{"peer_id": "12D3KooWabc", "account": "{key}", "role": "provider",
                "api_url": "http://127.0.0.1:4000",
                "listen_addrs": ["/ip4/127.0.0.1/tcp/5000/p2p/12D3KooWabc"], "pid": 1234}}"#
        );
        let ready: NodeReady = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (ready.role, ready.pid, ready.account),
            (Role::Provider, 1234, key)
        );
    }

    #[test]
    fn the_manifest_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            dir: dir.path().to_owned(),
            chain: ChainEntry {
                url: "http://127.0.0.1:1".into(),
                pid: 1,
                data_dir: dir.path().join("chain"),
                log: dir.path().join("chain/log"),
                evm: Some(EvmChain {
                    chain_id: 31337,
                    escrow: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
                    token: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".into(),
                }),
            },
            nodes: vec![NodeEntry {
                name: "requester-0".into(),
                role: Role::Requester,
                peer_id: "12D3KooWabc".into(),
                account: agora_protocol::Keypair::from_seed(&[1; 32]).public(),
                api_url: "http://127.0.0.1:2".into(),
                token: "ab".into(),
                listen_addrs: vec![],
                data_dir: dir.path().join("requester-0"),
                config: dir.path().join("requester-0/agorad.toml"),
                pid: 2,
                log: dir.path().join("requester-0/log"),
            }],
        };
        manifest.save().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), manifest);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(Manifest::path(dir.path())).unwrap())
                .unwrap();
        assert_eq!(json["nodes"][0]["role"], "requester");
        assert_eq!(json["chain"]["url"], "http://127.0.0.1:1");
    }
}
