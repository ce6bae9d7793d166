//! [`Testnet`]: a mock chain and N+M `agorad` processes on loopback.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_client::api::Role;
use agora_client::http::NodeClient;

use crate::binaries::Binaries;
use std::sync::Arc;

use agora_protocol::Ledger;

use crate::config::{Bootstrap, LedgerBackend, TestnetConfig, provider_config, requester_config};
use crate::error::TestnetError;
use crate::evm;
use crate::manifest::{ChainEntry, Manifest, NodeEntry, NodeReady, read_json};
use crate::process::{Launch, POLL, Proc, TAIL_LINES, file_len, find_line, log_tail};

/// The name of the mock chain in logs and errors.
pub const CHAIN: &str = "chain";

/// What the mock chain prints once it serves.
const CHAIN_READY: &str = "listening on ";

/// A running testnet.
///
/// Built by [`Testnet::start`], it owns its processes: dropping it kills
/// every one (also when a test panics), and [`Testnet::down`] stops them
/// gracefully and checks that they are gone. [`Testnet::detach`] leaves them
/// running (`agora-testnet up`); [`Testnet::from_dir`] picks such a testnet
/// up again from its `testnet.json`.
#[derive(Debug)]
pub struct Testnet {
    dir: PathBuf,
    config: TestnetConfig,
    bins: Option<Binaries>,
    chain: ChainEntry,
    chain_proc: Option<Proc>,
    nodes: Vec<Node>,
    /// Kill everything on drop.
    owned: bool,
}

/// One node: how it is started, and what it said when it was ready.
#[derive(Debug)]
struct Node {
    name: String,
    role: Role,
    data_dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    /// Set once it was ready at least once.
    entry: Option<NodeEntry>,
    proc: Option<Proc>,
}

impl Testnet {
    /// Starts the mock chain, then the first node, then every other node
    /// bootstrapped as [`TestnetConfig::bootstrap`] says, and waits until
    /// each is ready (its `node.json` is there). Writes `DIR/testnet.json`.
    ///
    /// `DIR` must be new, empty, or a testnet directory whose processes are
    /// all gone; in the last case the nodes keep their keys and state.
    pub async fn start(config: TestnetConfig) -> Result<Self, TestnetError> {
        if config.providers + config.requesters == 0 {
            return Err(TestnetError::NoNodes);
        }
        let dir = prepare_dir(&config.dir)?;
        let bins = Binaries::locate(config.bin_dir.as_deref())?;
        let chain_dir = dir.join(CHAIN);
        let mut net = Testnet {
            chain: ChainEntry {
                url: String::new(),
                pid: 0,
                data_dir: chain_dir.clone(),
                log: chain_dir.join("log"),
                evm: None,
            },
            dir,
            config,
            bins: Some(bins),
            chain_proc: None,
            nodes: Vec::new(),
            owned: true,
        };
        net.start_chain().await?;
        if net.config.ledger == LedgerBackend::Evm {
            let deployed = evm::deploy_escrow(&net.chain.url, net.config.close_grace_ms).await?;
            net.chain.evm = Some(deployed);
        }

        let roles = (0..net.config.providers)
            .map(|i| (Role::Provider, i))
            .chain((0..net.config.requesters).map(|i| (Role::Requester, i)));
        for (role, index) in roles {
            let node = net.prepare_node(role, index)?;
            if net.chain.evm.is_some() {
                evm::fund_node_key(&net.chain.url, &node.data_dir).await?;
            }
            net.nodes.push(node);
        }
        // The first node alone, so that everyone can bootstrap from it.
        net.spawn_node(0, Vec::new())?;
        net.wait_ready(0).await?;
        match net.config.bootstrap {
            Bootstrap::Earlier => {
                for i in 1..net.nodes.len() {
                    let bootstrap = (0..i).flat_map(|j| net.bootstrap_for(j)).collect();
                    net.spawn_node(i, bootstrap)?;
                    net.wait_ready(i).await?;
                }
            }
            Bootstrap::Sample(k) => {
                for i in 1..net.nodes.len() {
                    let bootstrap = sample_earlier(i, k)
                        .into_iter()
                        .flat_map(|j| net.bootstrap_for(j))
                        .collect();
                    net.spawn_node(i, bootstrap)?;
                    net.wait_ready(i).await?;
                }
            }
            Bootstrap::First => {
                let bootstrap = net.bootstrap_for(0);
                for i in 1..net.nodes.len() {
                    net.spawn_node(i, bootstrap.clone())?;
                }
                for i in 1..net.nodes.len() {
                    net.wait_ready(i).await?;
                }
            }
        }
        net.manifest().save()?;
        Ok(net)
    }

    /// The testnet listed in `DIR/testnet.json`, with those of its
    /// processes that are still running. Dropping it leaves them running;
    /// call [`Testnet::down`] to stop them.
    pub fn from_dir(dir: &Path) -> Result<Self, TestnetError> {
        let manifest = Manifest::load(dir)?;
        let chain_proc = Proc::adopt(
            CHAIN,
            manifest.chain.pid,
            &manifest.chain.log,
            &manifest.chain.data_dir,
        );
        let nodes = manifest
            .nodes
            .iter()
            .map(|entry| Node {
                name: entry.name.clone(),
                role: entry.role,
                data_dir: entry.data_dir.clone(),
                config: entry.config.clone(),
                log: entry.log.clone(),
                proc: Proc::adopt(&entry.name, entry.pid, &entry.log, &entry.data_dir),
                entry: Some(entry.clone()),
            })
            .collect::<Vec<_>>();
        let count = |role| nodes.iter().filter(|n: &&Node| n.role == role).count();
        let mut config =
            TestnetConfig::new(&manifest.dir, count(Role::Provider), count(Role::Requester));
        if manifest.chain.evm.is_some() {
            config.ledger = LedgerBackend::Evm;
        }
        Ok(Testnet {
            dir: manifest.dir,
            config,
            bins: None,
            chain: manifest.chain,
            chain_proc,
            nodes,
            owned: false,
        })
    }

    /// The testnet directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The chain's URL: the mock chain's base URL, or anvil's JSON-RPC.
    pub fn chain_url(&self) -> &str {
        &self.chain.url
    }

    /// The escrow, when the testnet runs on an EVM chain.
    pub fn evm_chain(&self) -> Option<&crate::manifest::EvmChain> {
        self.chain.evm.as_ref()
    }

    /// A client of the testnet's ledger, for reading the books: the mock
    /// chain over HTTP, or the escrow on anvil (with a gas key of its own).
    pub async fn ledger(&self) -> Result<Arc<dyn Ledger>, TestnetError> {
        match &self.chain.evm {
            Some(chain) => Ok(evm::as_ledger(evm::observer(&self.chain.url, chain).await?)),
            None => {
                let client = agora_contracts_mock::HttpLedger::new(&self.chain.url)
                    .map_err(|e| TestnetError::Evm(format!("mock chain client: {e}")))?;
                Ok(Arc::new(client))
            }
        }
    }

    /// The escrow's own client, on an EVM testnet: what the contract holds.
    pub async fn evm_ledger(
        &self,
    ) -> Result<Option<Arc<agora_contracts_evm::EvmLedger>>, TestnetError> {
        match &self.chain.evm {
            Some(chain) => Ok(Some(evm::observer(&self.chain.url, chain).await?)),
            None => Ok(None),
        }
    }

    /// What `testnet.json` says now: the chain and every node that was
    /// ready at least once, in start order.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            dir: self.dir.clone(),
            chain: self.chain.clone(),
            nodes: self.nodes.iter().filter_map(|n| n.entry.clone()).collect(),
        }
    }

    /// Every node, in start order (the first is everyone's bootstrap peer).
    pub fn nodes(&self) -> Vec<&NodeEntry> {
        self.nodes.iter().filter_map(|n| n.entry.as_ref()).collect()
    }

    /// The providers, `provider-0` first.
    pub fn providers(&self) -> Vec<&NodeEntry> {
        self.with_role(Role::Provider)
    }

    /// The requesters, `requester-0` first.
    pub fn requesters(&self) -> Vec<&NodeEntry> {
        self.with_role(Role::Requester)
    }

    fn with_role(&self, role: Role) -> Vec<&NodeEntry> {
        self.nodes()
            .into_iter()
            .filter(|n| n.role == role)
            .collect()
    }

    /// The node called `name`, as it was when last ready.
    pub fn node(&self, name: &str) -> Result<&NodeEntry, TestnetError> {
        let i = self.index(name)?;
        self.nodes[i]
            .entry
            .as_ref()
            .ok_or_else(|| TestnetError::NotRunning {
                name: name.to_string(),
            })
    }

    /// An API client of the node called `name`, with its token. The node
    /// must be running (after a restart, ask again: the port changed).
    pub fn client(&self, name: &str) -> Result<NodeClient, TestnetError> {
        let i = self.index(name)?;
        let node = &self.nodes[i];
        let (Some(entry), Some(_)) = (&node.entry, &node.proc) else {
            return Err(TestnetError::NotRunning {
                name: name.to_string(),
            });
        };
        NodeClient::new(&entry.api_url, Some(&entry.token)).map_err(|e| TestnetError::Client {
            name: name.to_string(),
            message: e.to_string(),
        })
    }

    /// Whether the node (or [`CHAIN`]) called `name` is running.
    pub fn is_running(&mut self, name: &str) -> Result<bool, TestnetError> {
        let proc = if name == CHAIN {
            &mut self.chain_proc
        } else {
            let i = self.index(name)?;
            &mut self.nodes[i].proc
        };
        Ok(proc.as_mut().is_some_and(Proc::is_running))
    }

    /// The processes of this testnet that are running now, as
    /// `(name, pid)`, the chain first.
    pub fn running(&mut self) -> Vec<(String, u32)> {
        self.chain_proc
            .iter_mut()
            .chain(self.nodes.iter_mut().filter_map(|n| n.proc.as_mut()))
            .filter_map(|p| p.is_running().then(|| (p.name.clone(), p.pid)))
            .collect()
    }

    /// The last `lines` lines of the log of `name` (a node or [`CHAIN`]).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let log = if name == CHAIN {
            Some(&self.chain.log)
        } else {
            self.nodes.iter().find(|n| n.name == name).map(|n| &n.log)
        };
        match log {
            Some(log) => log_tail(log, lines),
            None => format!("(no process named {name})"),
        }
    }

    /// The last `lines` lines of every log, each under a heading: for
    /// failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        std::iter::once(CHAIN)
            .chain(self.nodes.iter().map(|n| n.name.as_str()))
            .map(|name| format!("----- {name} -----\n{}\n", self.log_tail(name, lines)))
            .collect()
    }

    /// Stops a node gracefully: SIGTERM, then SIGKILL after the stop
    /// timeout. Its data directory stays for [`Testnet::restart`].
    pub async fn stop(&mut self, name: &str) -> Result<(), TestnetError> {
        let i = self.index(name)?;
        let timeout = self.config.stop_timeout;
        if let Some(proc) = &mut self.nodes[i].proc {
            proc.stop(timeout).await?;
        }
        self.nodes[i].proc = None;
        Ok(())
    }

    /// Takes the chain down: the ledger is unreachable until
    /// [`Testnet::restart_chain`]. The mock chain is killed with SIGKILL
    /// (its store is durable); anvil is stopped with SIGTERM, on which it
    /// writes its state, since a real chain never loses confirmed blocks.
    pub async fn kill_chain(&mut self) -> Result<(), TestnetError> {
        let evm = self.chain.evm.is_some();
        let timeout = self.config.stop_timeout;
        if let Some(proc) = &mut self.chain_proc {
            if evm {
                proc.stop(timeout).await?;
            } else {
                proc.kill().await?;
            }
        }
        self.chain_proc = None;
        Ok(())
    }

    /// Starts the mock chain again on its data and its address.
    pub async fn restart_chain(&mut self) -> Result<(), TestnetError> {
        self.kill_chain().await?;
        if self.bins.is_none() {
            self.bins = Some(Binaries::locate(self.config.bin_dir.as_deref())?);
        }
        self.start_chain().await?;
        self.manifest().save()
    }

    /// Kills a node with SIGKILL: no shutdown, no flush.
    pub async fn kill(&mut self, name: &str) -> Result<(), TestnetError> {
        let i = self.index(name)?;
        if let Some(proc) = &mut self.nodes[i].proc {
            proc.kill().await?;
        }
        self.nodes[i].proc = None;
        Ok(())
    }

    /// Starts a node again on its data directory and config, stopping it
    /// first if it runs, bootstrapped from the other nodes that run (from
    /// the first of them with [`Bootstrap::First`]), so the first node, too,
    /// finds its way back. Its ports change; the returned entry and
    /// `testnet.json` have the new ones.
    pub async fn restart(&mut self, name: &str) -> Result<&NodeEntry, TestnetError> {
        let i = self.index(name)?;
        self.stop(name).await?;
        if self.bins.is_none() {
            self.bins = Some(Binaries::locate(self.config.bin_dir.as_deref())?);
        }
        let mut running = Vec::new();
        for j in (0..self.nodes.len()).filter(|&j| j != i) {
            if self.nodes[j].proc.as_mut().is_some_and(Proc::is_running) {
                running.push(j);
            }
        }
        if self.config.bootstrap == Bootstrap::First {
            running.truncate(1);
        }
        let bootstrap = running
            .into_iter()
            .flat_map(|j| self.bootstrap_for(j))
            .collect();
        self.spawn_node(i, bootstrap)?;
        self.wait_ready(i).await?;
        self.manifest().save()?;
        self.node(name)
    }

    /// Stops every node, then the chain (SIGTERM; SIGKILL for whatever
    /// outlives the stop timeout) and checks that every process is gone.
    pub async fn down(mut self) -> Result<(), TestnetError> {
        let timeout = self.config.stop_timeout;
        let mut procs: Vec<Proc> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.proc.take())
            .collect();
        stop_all(&mut procs, timeout).await?;
        let mut chain: Vec<Proc> = self.chain_proc.take().into_iter().collect();
        stop_all(&mut chain, timeout).await
    }

    /// Leaves every process running and forgets them; returns the manifest
    /// that lists them (`agora-testnet up`).
    pub fn detach(mut self) -> Manifest {
        self.owned = false;
        self.manifest()
    }

    fn index(&self, name: &str) -> Result<usize, TestnetError> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| TestnetError::UnknownNode {
                name: name.to_string(),
                known: self
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn bins(&self) -> Result<&Binaries, TestnetError> {
        self.bins
            .as_ref()
            .ok_or_else(|| TestnetError::MissingBinary {
                binary: "agorad".into(),
                searched: "(not located)".into(),
            })
    }

    async fn start_chain(&mut self) -> Result<(), TestnetError> {
        let data = self.chain.data_dir.clone();
        std::fs::create_dir_all(&data).map_err(|e| TestnetError::io(&data, e))?;
        let from = file_len(&self.chain.log);
        // A restarted chain keeps its address: the nodes know it.
        let listen = self
            .chain
            .url
            .strip_prefix("http://")
            .unwrap_or("127.0.0.1:0")
            .to_string();
        let listen = if listen.is_empty() {
            "127.0.0.1:0".to_string()
        } else {
            listen
        };
        let anvil;
        let (program, args, ready): (&Path, Vec<OsString>, &str) = match self.config.ledger {
            LedgerBackend::Mock => (
                &self.bins()?.mock_chain,
                vec![
                    "--listen".into(),
                    listen.into(),
                    "--data".into(),
                    data.into_os_string(),
                    "--close-grace-ms".into(),
                    self.config.close_grace_ms.to_string().into(),
                ],
                CHAIN_READY,
            ),
            LedgerBackend::Evm => {
                anvil = evm::anvil_binary()?;
                (&anvil, evm::anvil_args(&listen, &data), evm::ANVIL_READY)
            }
        };
        let mut proc = Launch {
            name: CHAIN,
            program,
            args,
            log: &self.chain.log,
            rust_log: &self.config.rust_log,
            detach: self.config.detach,
        }
        .spawn()?;
        self.chain.pid = proc.pid;
        let deadline = Instant::now() + self.config.ready_timeout;
        let addr = loop {
            if let Some(addr) = find_line(&self.chain.log, from, ready) {
                break addr;
            }
            check_alive(
                &mut proc,
                deadline,
                self.config.ready_timeout,
                &format!("its `{}` line", ready.trim()),
            )?;
            tokio::time::sleep(POLL).await;
        };
        self.chain.url = format!("http://{addr}");
        self.chain_proc = Some(proc);
        Ok(())
    }

    /// Makes the node's data directory and writes its config.
    fn prepare_node(&self, role: Role, index: usize) -> Result<Node, TestnetError> {
        let (name, text) = match role {
            Role::Provider => (
                format!("provider-{index}"),
                provider_config(index, &self.config.node),
            ),
            Role::Requester => (
                format!("requester-{index}"),
                requester_config(index, &self.config.node),
            ),
        };
        let text = match &self.chain.evm {
            Some(chain) => text + &evm::ledger_toml(&self.chain.url, chain),
            None => text,
        };
        let data_dir = self.dir.join(&name);
        std::fs::create_dir_all(&data_dir).map_err(|e| TestnetError::io(&data_dir, e))?;
        let config = data_dir.join("agorad.toml");
        std::fs::write(&config, text).map_err(|e| TestnetError::io(&config, e))?;
        Ok(Node {
            log: data_dir.join("log"),
            name,
            role,
            data_dir,
            config,
            entry: None,
            proc: None,
        })
    }

    fn spawn_node(&mut self, i: usize, bootstrap: Vec<String>) -> Result<(), TestnetError> {
        let agorad = self.bins()?.agorad.clone();
        let node = &self.nodes[i];
        // A node.json from an earlier run must not pass for this one's.
        let ready = node.data_dir.join("node.json");
        match std::fs::remove_file(&ready) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TestnetError::io(&ready, e)),
        }
        let role = match node.role {
            Role::Provider => "provider",
            Role::Requester => "requester",
        };
        let mut args: Vec<OsString> = vec![
            "--data".into(),
            node.data_dir.clone().into_os_string(),
            role.into(),
            "--config".into(),
            node.config.clone().into_os_string(),
            "--api".into(),
            "127.0.0.1:0".into(),
            "--listen".into(),
            "/ip4/127.0.0.1/tcp/0".into(),
        ];
        // On an EVM chain the config's [ledger.evm] names the ledger.
        if self.chain.evm.is_none() {
            args.push("--ledger".into());
            args.push(self.chain.url.clone().into());
        }
        for addr in bootstrap {
            args.push("--bootstrap".into());
            args.push(addr.into());
        }
        let proc = Launch {
            name: &node.name,
            program: &agorad,
            args,
            log: &node.log,
            rust_log: &self.config.rust_log,
            detach: self.config.detach,
        }
        .spawn()?;
        self.nodes[i].proc = Some(proc);
        Ok(())
    }

    /// Waits for the node's `node.json` (from this process) and API token.
    async fn wait_ready(&mut self, i: usize) -> Result<(), TestnetError> {
        let timeout = self.config.ready_timeout;
        let deadline = Instant::now() + timeout;
        let node = &mut self.nodes[i];
        let waiting_for = format!("{}/{{node.json,api.token}}", node.data_dir.display());
        let entry = loop {
            let Some(proc) = node.proc.as_mut() else {
                return Err(TestnetError::NotRunning {
                    name: node.name.clone(),
                });
            };
            if let Some(ready) = read_ready(&node.data_dir, proc.pid) {
                break NodeEntry {
                    name: node.name.clone(),
                    data_dir: node.data_dir.clone(),
                    config: node.config.clone(),
                    log: node.log.clone(),
                    ..ready
                };
            }
            check_alive(proc, deadline, timeout, &waiting_for)?;
            tokio::time::sleep(POLL).await;
        };
        node.entry = Some(entry);
        Ok(())
    }

    /// The `--bootstrap` addresses that lead to node `i`.
    fn bootstrap_for(&self, i: usize) -> Vec<String> {
        self.nodes[i]
            .entry
            .as_ref()
            .map(|e| e.listen_addrs.clone())
            .unwrap_or_default()
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        for proc in self.nodes.iter_mut().filter_map(|n| n.proc.as_mut()) {
            proc.kill_blocking();
        }
        if let Some(proc) = &mut self.chain_proc {
            proc.kill_blocking();
        }
    }
}

/// Errs if `proc` has exited or the deadline has passed.
fn check_alive(
    proc: &mut Proc,
    deadline: Instant,
    timeout: Duration,
    waiting_for: &str,
) -> Result<(), TestnetError> {
    if let Some(status) = proc.exit_status() {
        return Err(TestnetError::Died {
            name: proc.name.clone(),
            status,
            log: proc.log.clone(),
            tail: log_tail(&proc.log, TAIL_LINES),
        });
    }
    if Instant::now() >= deadline {
        return Err(TestnetError::NotReady {
            name: proc.name.clone(),
            secs: timeout.as_secs(),
            waiting_for: waiting_for.to_string(),
            log: proc.log.clone(),
            tail: log_tail(&proc.log, TAIL_LINES),
        });
    }
    Ok(())
}

/// The node's entry once `DATA/node.json` (written by process `pid`) and
/// `DATA/api.token` are there; the name and paths are left for the caller.
fn read_ready(data_dir: &Path, pid: u32) -> Option<NodeEntry> {
    let ready: NodeReady = read_json(&data_dir.join("node.json")).ok()?;
    if ready.pid != pid {
        return None;
    }
    let token = std::fs::read_to_string(data_dir.join("api.token")).ok()?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    Some(NodeEntry {
        name: String::new(),
        role: ready.role,
        peer_id: ready.peer_id,
        account: ready.account,
        api_url: ready.api_url,
        token: token.to_string(),
        listen_addrs: ready.listen_addrs,
        data_dir: PathBuf::new(),
        config: PathBuf::new(),
        pid,
        log: PathBuf::new(),
    })
}

/// SIGTERM to all, up to `timeout` for them to exit, SIGKILL to the rest;
/// errs naming whatever is still running after that.
async fn stop_all(procs: &mut [Proc], timeout: Duration) -> Result<(), TestnetError> {
    let mut first_error = None;
    for proc in procs.iter_mut() {
        if let Err(e) = proc.signal("TERM") {
            first_error.get_or_insert(e);
        }
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !procs.iter_mut().all(Proc::is_gone) {
        tokio::time::sleep(POLL).await;
    }
    let mut survivors = Vec::new();
    for proc in procs.iter_mut() {
        if proc.is_gone() {
            continue;
        }
        if let Err(e) = proc.kill().await {
            survivors.push(format!("{} (pid {}): {e}", proc.name, proc.pid));
        }
    }
    if !survivors.is_empty() {
        return Err(TestnetError::Survivors(survivors.join(", ")));
    }
    // A failed SIGTERM matters only if the process outlived the SIGKILL too.
    drop(first_error);
    Ok(())
}

/// Creates `dir` if needed and checks that a testnet may start there;
/// returns it absolute.
fn prepare_dir(dir: &Path) -> Result<PathBuf, TestnetError> {
    std::fs::create_dir_all(dir).map_err(|e| TestnetError::io(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| TestnetError::io(dir, e))?;
    if Manifest::path(&dir).exists() {
        let old = Testnet::from_dir(&dir)?;
        if let Some(proc) = old
            .chain_proc
            .iter()
            .chain(old.nodes.iter().filter_map(|n| n.proc.as_ref()))
            .next()
        {
            return Err(TestnetError::AlreadyRunning {
                dir,
                name: proc.name.clone(),
                pid: proc.pid,
            });
        }
        return Ok(dir);
    }
    // A start that failed before it wrote testnet.json leaves only these.
    let ours = |name: &str| {
        name == CHAIN
            || name == ".testnet.json.tmp"
            || ["provider-", "requester-"].iter().any(|prefix| {
                name.strip_prefix(prefix)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| TestnetError::io(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| TestnetError::io(&dir, e))?;
        if !entry.file_name().to_str().is_some_and(ours) {
            return Err(TestnetError::NotATestnetDir { dir });
        }
    }
    Ok(dir)
}

/// For [`Bootstrap::Sample`]: node 0 and up to `k - 1` other nodes among
/// `1..i`, distinct, picked by a fixed pseudo-random sequence seeded by `i`.
fn sample_earlier(i: usize, k: usize) -> Vec<usize> {
    let mut picked = vec![0];
    let others = i.saturating_sub(1);
    let want = k.saturating_sub(1).min(others);
    // splitmix64: well spread, and the same picks every run.
    let mut state = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    while picked.len() < want + 1 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let j = 1 + (z % others as u64) as usize;
        if !picked.contains(&j) {
            picked.push(j);
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::sample_earlier;

    #[test]
    fn sampled_bootstrap_peers_are_earlier_distinct_and_include_the_first() {
        for i in 1..200 {
            let picked = sample_earlier(i, 4);
            assert_eq!(picked[0], 0);
            assert_eq!(picked.len(), 4.min(i), "node {i}: {picked:?}");
            assert!(picked.iter().all(|&j| j < i), "node {i}: {picked:?}");
            let mut sorted = picked.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), picked.len(), "node {i}: {picked:?}");
        }
        assert_eq!(sample_earlier(50, 4), sample_earlier(50, 4));
    }
}
