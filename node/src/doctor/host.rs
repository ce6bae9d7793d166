//! The host's part of the preflight: sockets, the data dir, the key file
//! and free space.

use std::net::IpAddr;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use agora_protocol::{IdentityError, Keypair};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

use super::{Check, MIN_FREE_BYTES};

/// A libp2p listen address can be bound (TCP or UDP, then released).
/// Addresses by name (DNS) are not checked.
pub fn check_listen(addr: &Multiaddr) -> Check {
    const NAME: &str = "listen";
    let mut ip: Option<IpAddr> = None;
    let mut socket: Option<(bool, u16)> = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::Ip4(a) => ip = Some(a.into()),
            Protocol::Ip6(a) => ip = Some(a.into()),
            Protocol::Tcp(port) => socket = Some((true, port)),
            Protocol::Udp(port) => socket = Some((false, port)),
            _ => {}
        }
    }
    let (Some(ip), Some((tcp, port))) = (ip, socket) else {
        return Check::ok(
            NAME,
            format!("{addr}: not an IP address and port; not checked"),
        );
    };
    let sock = SocketAddr::new(ip, port);
    let bound = if tcp {
        TcpListener::bind(sock).map(drop)
    } else {
        UdpSocket::bind(sock).map(drop)
    };
    match bound {
        Ok(()) if port == 0 => Check::ok(NAME, format!("{addr}: any free port")),
        Ok(()) => Check::ok(NAME, format!("{addr}: port {port} is free")),
        Err(e) => Check::error(
            NAME,
            format!("{addr}: cannot bind {sock}: {e}"),
            format!("free port {port} or pass --listen to choose another address"),
        ),
    }
}

/// The API address can be bound (then released).
pub fn check_api(addr: SocketAddr) -> Check {
    const NAME: &str = "api";
    match TcpListener::bind(addr) {
        Ok(_) if !addr.ip().is_loopback() => Check::warning(
            NAME,
            format!(
                "{addr} is free but beyond loopback; anyone who reaches it needs only the token"
            ),
            "keep the API on 127.0.0.1 unless you mean otherwise",
        ),
        Ok(_) => Check::ok(NAME, format!("{addr} is free")),
        Err(e) => Check::error(
            NAME,
            format!("cannot bind {addr}: {e}"),
            format!(
                "free port {} or pass --api to choose another address",
                addr.port()
            ),
        ),
    }
}

/// The data dir exists and is writable, or the nearest existing parent
/// is, so that the node can create it.
pub fn check_data_dir(dir: &Path) -> Check {
    const NAME: &str = "data dir";
    let fix = format!(
        "make {} writable by this user or pass --data DIR",
        dir.display()
    );
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Check::error(
            NAME,
            format!("{} is not a directory", dir.display()),
            "pass --data with a directory",
        ),
        Ok(_) => match writable(dir) {
            Ok(()) => Check::ok(NAME, format!("{} is writable", dir.display())),
            Err(e) => Check::error(NAME, format!("{} is not writable: {e}", dir.display()), fix),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = existing_ancestor(dir);
            match writable(&parent) {
                Ok(()) => Check::ok(
                    NAME,
                    format!("{} does not exist yet; it will be created", dir.display()),
                ),
                Err(e) => Check::error(
                    NAME,
                    format!(
                        "{} does not exist and {} is not writable: {e}",
                        dir.display(),
                        parent.display()
                    ),
                    fix,
                ),
            }
        }
        Err(e) => Check::error(NAME, format!("{}: {e}", dir.display()), fix),
    }
}

fn writable(dir: &Path) -> nix::Result<()> {
    use nix::unistd::{AccessFlags, access};
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
}

/// The path itself if it exists, else its nearest existing ancestor
/// (`.` for a relative path with none).
fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The key file, if present, loads and is readable by its owner only.
pub fn check_key_file(path: &Path) -> Check {
    const NAME: &str = "key file";
    if !path.exists() {
        return Check::ok(
            NAME,
            format!(
                "{} not created yet (first start makes it, mode 0600)",
                path.display()
            ),
        );
    }
    match Keypair::load(path) {
        Ok(key) => Check::ok(
            NAME,
            format!("{} (0600), peer {}", path.display(), key.public().peer_id()),
        ),
        Err(IdentityError::Permissions { mode, .. }) => Check::error(
            NAME,
            format!(
                "{} has mode {mode:04o}: group or others can read the node's key",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        ),
        Err(e) => Check::error(
            NAME,
            e.to_string(),
            format!(
                "move {} aside (a new key is a new identity) or restore it",
                path.display()
            ),
        ),
    }
}

/// Free space where results (and the store) go: below the node's own
/// floor (`node.min_free_disk_mib`) it would take no new work; below
/// [`MIN_FREE_BYTES`] it soon may.
pub fn check_disk(results: &Path, min_free_disk_mib: u64) -> Check {
    const NAME: &str = "disk";
    let at = existing_ancestor(results);
    match crate::disk::free_bytes(&at) {
        Ok(free) => {
            let found = format!("{} free at {}", gib(free), at.display());
            if free < min_free_disk_mib.saturating_mul(1024 * 1024) {
                Check::warning(
                    NAME,
                    format!(
                        "{found}, below node.min_free_disk_mib = {min_free_disk_mib}: \
                         the node would take no new work"
                    ),
                    "free space there, pass --data on a larger file system, or lower node.min_free_disk_mib",
                )
            } else if free < MIN_FREE_BYTES {
                Check::warning(
                    NAME,
                    found,
                    "free space there or pass --data on a larger file system",
                )
            } else {
                Check::ok(NAME, found)
            }
        }
        Err(e) => Check::warning(
            NAME,
            format!("cannot read free space at {}: {e}", at.display()),
            "check the data dir's file system",
        ),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}
