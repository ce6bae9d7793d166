//! The API's HTTP server: hyper under our own accept loop, so that hostile
//! local clients cannot take the node's file descriptors or memory, and
//! the token holder keeps being answered.
//!
//! - at most `max_connections` connections; one more is answered `503`
//!   and closed (a visible refusal, counted);
//! - a connection is *unauthenticated* until one of its requests carries
//!   the token. At most `max_unauthenticated` of those are kept: a new one
//!   evicts the oldest, so idle or half-sent connections can never keep a
//!   new client (the token holder's) out. An unauthenticated connection is
//!   also closed `unauthenticated_timeout` after it opened;
//! - a request's head must arrive within `header_timeout`, its body within
//!   `body_timeout`;
//! - requests without a valid token are limited per source address
//!   (`unauthenticated_per_sec`, a token bucket): beyond it, `429`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::config::ApiSection;
use crate::metrics::{Metrics, ReasonLabel};

/// A connection, as its requests see it (in their extensions).
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The client's address.
    pub(crate) ip: IpAddr,
    conn: Arc<Conn>,
}

impl Peer {
    /// One of its requests carried the token: the connection stays.
    pub(crate) fn authenticated(&self) {
        self.conn.authenticated.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Conn {
    authenticated: AtomicBool,
    evict: CancellationToken,
}

/// The unauthenticated connections, oldest first.
#[derive(Debug)]
struct Unauthenticated {
    queue: Mutex<VecDeque<Weak<Conn>>>,
    max: usize,
}

impl Unauthenticated {
    /// Admits `conn`; evicts (and returns how many of) the oldest beyond
    /// the cap.
    fn admit(&self, conn: &Arc<Conn>) -> usize {
        let mut queue = match self.queue.lock() {
            Ok(queue) => queue,
            Err(poisoned) => poisoned.into_inner(),
        };
        queue.retain(|weak| {
            weak.upgrade()
                .is_some_and(|c| !c.authenticated.load(Ordering::Relaxed))
        });
        queue.push_back(Arc::downgrade(conn));
        let mut evicted = 0;
        while queue.len() > self.max {
            if let Some(oldest) = queue.pop_front().and_then(|w| w.upgrade()) {
                oldest.evict.cancel();
                evicted += 1;
            }
        }
        evicted
    }
}

/// Requests without a valid token, per source address: a token bucket of
/// `rate` per second with a burst of `rate`. Bounded: past 4096 addresses
/// the fullest buckets (idle longest) are forgotten.
#[derive(Debug)]
pub(crate) struct AuthLimiter {
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

const LIMITER_ADDRESSES: usize = 4096;

impl AuthLimiter {
    pub(crate) fn new(per_sec: u32) -> Self {
        Self {
            rate: f64::from(per_sec.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token from `ip`'s bucket: `false` when empty.
    pub(crate) fn allow(&self, ip: IpAddr) -> bool {
        let mut buckets = match self.buckets.lock() {
            Ok(buckets) => buckets,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        if buckets.len() >= LIMITER_ADDRESSES && !buckets.contains_key(&ip) {
            let oldest = buckets
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                buckets.remove(&oldest);
            }
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a connection over the cap is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 71\r\n\r\n{\"error\":\"the node has too many API connections open; try again later\"}";

/// Serves `router` on `listener` under `limits` until `cancel`; then stops
/// accepting, lets requests in flight finish (up to 2 s) and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ApiSection,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let unauthenticated = Arc::new(Unauthenticated {
        queue: Mutex::new(VecDeque::new()),
        max: limits.max_unauthenticated_connections,
    });
    let closed = |reason: &'static str| {
        metrics
            .api_connections_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    };
    let tracker = TaskTracker::new();
    loop {
        let (stream, addr) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was
                    // accepted: wait a little rather than spin.
                    warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            closed("max_connections");
            tracker.spawn(refuse(stream));
            continue;
        };
        let conn = Arc::new(Conn {
            authenticated: AtomicBool::new(false),
            evict: CancellationToken::new(),
        });
        let evicted = unauthenticated.admit(&conn);
        for _ in 0..evicted {
            closed("unauthenticated_evicted");
        }
        let peer = Peer {
            ip: addr.ip(),
            conn: conn.clone(),
        };
        let service = tower::ServiceBuilder::new()
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                limits.body_timeout(),
            ))
            .service(router.clone())
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(peer.clone());
                request
            });
        let cancel = cancel.clone();
        let metrics = metrics.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            tokio::pin!(connection);
            let deadline = tokio::time::sleep(limits.unauthenticated_timeout());
            tokio::pin!(deadline);
            let mut armed = true;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            debug!(error = %e, "API connection ended with an error");
                        }
                        break;
                    }
                    // Counted when it was decided, in `admit`'s caller.
                    () = conn.evict.cancelled() => break,
                    () = &mut deadline, if armed => {
                        if conn.authenticated.load(Ordering::Relaxed) {
                            armed = false;
                            continue;
                        }
                        metrics
                            .api_connections_closed
                            .get_or_create(&ReasonLabel { reason: "unauthenticated_timeout" })
                            .inc();
                        break;
                    }
                    () = cancel.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(2), connection.as_mut()).await;
                        break;
                    }
                }
            }
        });
    }
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        warn!("API connections still open 5 s after shutdown; dropping them");
    }
}

/// Tells a connection over the cap why, then closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_allows_a_burst_then_the_rate_per_address() {
        let limiter = AuthLimiter::new(3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| limiter.allow(a)));
        assert!(!limiter.allow(a), "the burst is spent");
        assert!(limiter.allow(b), "another address has its own bucket");
        std::thread::sleep(Duration::from_millis(400));
        assert!(limiter.allow(a), "refilled at 3/s");
    }

    #[test]
    fn a_new_unauthenticated_connection_evicts_the_oldest_beyond_the_cap() {
        let queue = Unauthenticated {
            queue: Mutex::new(VecDeque::new()),
            max: 2,
        };
        let conn = || {
            Arc::new(Conn {
                authenticated: AtomicBool::new(false),
                evict: CancellationToken::new(),
            })
        };
        let (first, second, third) = (conn(), conn(), conn());
        assert_eq!(queue.admit(&first), 0);
        assert_eq!(queue.admit(&second), 0);
        assert_eq!(queue.admit(&third), 1);
        assert!(first.evict.is_cancelled());
        assert!(!second.evict.is_cancelled() && !third.evict.is_cancelled());
        // An authenticated connection no longer counts.
        second.authenticated.store(true, Ordering::Relaxed);
        assert_eq!(queue.admit(&conn()), 0);
        assert!(!third.evict.is_cancelled());
    }
}
