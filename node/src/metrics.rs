//! The node's metrics, served at `GET /metrics` in the OpenMetrics text
//! format (`prometheus-client`). Every name starts with `agora_`, carries
//! its unit, and is listed with its labels in `docs/metrics.md`.
//!
//! Two kinds:
//! - **Counters and histograms** move where the event happens: gossip
//!   validation in the network actor, the cores' answers and effects in
//!   the router, the executor's receipts and settlements, every ledger
//!   call ([`ledger::MeteredLedger`]), every API request
//!   ([`http::count_requests`]). They are atomics, resolved once where the
//!   label set is fixed, so the hot path takes no lock of its own.
//! - **Snapshot gauges** (peers, mesh, book, leases, runs, jobs, earnings,
//!   GPU telemetry) are read at scrape time from the handles that already
//!   serve the API, each with a deadline ([`scrape`]): a scrape waits at
//!   most that long for any part and never holds the router. A part that
//!   did not answer is left out and `agora_scrape_source_up` says so.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::network::reject::RejectReason;

pub mod http;
pub mod ledger;
pub mod scrape;
pub mod snapshot;

/// The content type of `GET /metrics` for a client that accepts
/// OpenMetrics (Prometheus does).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of `GET /metrics` for any other client (`curl`,
/// `promtool check metrics`): Prometheus' text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which exposition format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, as prometheus-client encodes it.
    OpenMetrics,
    /// Prometheus' text format 0.0.4.
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// it, else the text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// Its content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }
}

/// Rewrites prometheus-client's OpenMetrics text as Prometheus' text
/// format 0.0.4. The two differ, for what prometheus-client writes here
/// (counters, gauges, histograms; no exemplars, units or `_created`), in
/// one way: an OpenMetrics counter family `x` has samples `x_total`, where
/// 0.0.4 names the family `x_total` itself; and 0.0.4 has no `# EOF`.
pub fn to_text_format(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some(text) = help.take().and_then(|h| h.split_once(' ').map(|(_, t)| t)) {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `topic`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// `offers`, `orders` (or `unknown`).
    pub topic: &'static str,
}

/// `topic`, `reason`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicReasonLabels {
    /// `offers`, `orders` or `unknown`.
    pub topic: &'static str,
    /// Why.
    pub reason: &'static str,
}

/// `reason`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// `role`: which side of a lease counted it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    /// `provider` or `requester`.
    pub role: &'static str,
}

/// `event`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    /// A requester job event's name.
    pub event: &'static str,
}

/// `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `paid` or `refused`.
    pub result: &'static str,
}

/// `op`, `error`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LedgerErrorLabels {
    /// The ledger operation.
    pub op: &'static str,
    /// The error's kind.
    pub error: &'static str,
}

/// `method`, `route`, `status`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// The route template (`/v1/jobs/{id}`), `unmatched` for no route.
    pub route: String,
    /// The status code.
    pub status: u16,
}

/// Gossip validation's counters, the accepted ones resolved once (one
/// atomic add per message).
#[derive(Debug, Clone)]
pub struct GossipMetrics {
    accepted_offers: Counter,
    accepted_orders: Counter,
    expired_offers: Counter,
    expired_orders: Counter,
    rate_limited_orders: Counter,
    rejected: Family<TopicReasonLabels, Counter>,
    dropped: Counter,
}

impl GossipMetrics {
    /// A valid message on `topic` (`offers` or `orders`).
    pub fn accepted(&self, offers: bool) {
        if offers {
            self.accepted_offers.inc();
        } else {
            self.accepted_orders.inc();
        }
    }

    /// A harmless but useless message (expired).
    pub fn expired(&self, offers: bool) {
        if offers {
            self.expired_offers.inc();
        } else {
            self.expired_orders.inc();
        }
    }

    /// An order ignored: the peer that delivered it was past its order
    /// budget.
    pub fn rate_limited(&self) {
        self.rate_limited_orders.inc();
    }

    /// A rejected message.
    pub fn rejected(&self, topic: &'static str, reason: RejectReason) {
        self.rejected
            .get_or_create(&TopicReasonLabels {
                topic,
                reason: reason.as_str(),
            })
            .inc();
    }

    /// A valid message the node could not take (its queue was full).
    pub fn dropped(&self) {
        self.dropped.inc();
    }
}

impl Default for GossipMetrics {
    /// Counters registered nowhere (a bare network in tests).
    fn default() -> Self {
        Metrics::new().gossip
    }
}

/// Every counter and histogram of a node; the snapshot gauges are built
/// per scrape ([`snapshot`]). Cheap to clone: clones share the counters.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Gossip validation.
    pub gossip: GossipMetrics,
    /// Orders a provider saw for the first time.
    pub orders_seen: Counter,
    /// Bids a provider decided to send.
    pub bids: Counter,
    /// Declines a provider decided to send, by reason.
    pub declines: Family<ReasonLabel, Counter>,
    /// Orders a provider dropped without an answer, by reason.
    pub orders_unanswered: Family<ReasonLabel, Counter>,
    /// Leases signed: countersigned by a provider, signed by a requester.
    pub leases_signed: Family<RoleLabel, Counter>,
    /// Usage receipts a provider signed.
    pub receipts_signed: Counter,
    /// Receipts countersigned: by this requester, or received so by this
    /// provider.
    pub receipts_countersigned: Family<RoleLabel, Counter>,
    /// A requester's job events, by name.
    pub job_events: Family<EventLabel, Counter>,
    /// Settlements a provider asked the ledger for, by outcome.
    pub settlements: Family<ResultLabel, Counter>,
    /// From the countersignature of the receipt settled to the ledger's
    /// payment, seconds.
    pub settlement_latency: Histogram,
    /// Ledger calls that failed, by operation and error.
    pub ledger_errors: Family<LedgerErrorLabels, Counter>,
    /// API requests by method, route template and status.
    pub api_requests: Family<RequestLabels, Counter>,
    /// API connections refused or closed by the server, by reason.
    pub api_connections_closed: Family<ReasonLabel, Counter>,
    /// API requests refused for arriving too fast without the token.
    pub api_rate_limited: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every counter and histogram at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let accepted = Family::<TopicLabel, Counter>::default();
        let ignored = Family::<TopicReasonLabels, Counter>::default();
        let rejected = Family::<TopicReasonLabels, Counter>::default();
        let dropped = Counter::default();
        let gossip = GossipMetrics {
            accepted_offers: accepted.get_or_create_owned(&TopicLabel { topic: "offers" }),
            accepted_orders: accepted.get_or_create_owned(&TopicLabel { topic: "orders" }),
            expired_offers: ignored.get_or_create_owned(&TopicReasonLabels {
                topic: "offers",
                reason: "expired",
            }),
            expired_orders: ignored.get_or_create_owned(&TopicReasonLabels {
                topic: "orders",
                reason: "expired",
            }),
            rate_limited_orders: ignored.get_or_create_owned(&TopicReasonLabels {
                topic: "orders",
                reason: "rate_limited",
            }),
            rejected: rejected.clone(),
            dropped: dropped.clone(),
        };
        registry.register(
            "agora_gossip_accepted",
            "Gossip messages that passed validation and were forwarded, by topic",
            accepted,
        );
        registry.register(
            "agora_gossip_rejected",
            "Gossip messages rejected (their sender's gossipsub score drops), by topic and reason",
            rejected,
        );
        registry.register(
            "agora_gossip_ignored",
            "Gossip messages ignored: valid but useless (expired), or orders past their peer's budget (rate_limited)",
            ignored,
        );
        registry.register(
            "agora_gossip_dropped",
            "Valid gossip messages the market could not take because its queue was full",
            dropped,
        );
        let orders_seen = Counter::default();
        registry.register(
            "agora_orders_seen",
            "Orders this provider saw for the first time",
            orders_seen.clone(),
        );
        let bids = Counter::default();
        registry.register(
            "agora_bids",
            "Bids this provider decided to send (one per order)",
            bids.clone(),
        );
        let declines = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "agora_declines",
            "Declines this provider decided to send, by reason",
            declines.clone(),
        );
        let orders_unanswered = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "agora_orders_unanswered",
            "Orders this provider dropped without a bid or decline, by reason",
            orders_unanswered.clone(),
        );
        let leases_signed = Family::<RoleLabel, Counter>::default();
        registry.register(
            "agora_leases_signed",
            "Leases signed: countersigned by this provider, or signed by this requester",
            leases_signed.clone(),
        );
        let receipts_signed = Counter::default();
        registry.register(
            "agora_receipts_signed",
            "Usage receipts this provider signed and sent",
            receipts_signed.clone(),
        );
        let receipts_countersigned = Family::<RoleLabel, Counter>::default();
        registry.register(
            "agora_receipts_countersigned",
            "Usage receipts countersigned: by this requester (role=requester), or received \
             countersigned and checked by this provider (role=provider)",
            receipts_countersigned.clone(),
        );
        let job_events = Family::<EventLabel, Counter>::default();
        registry.register(
            "agora_job_events",
            "A requester's job events, by name (client::api::JOB_EVENTS)",
            job_events.clone(),
        );
        let settlements = Family::<ResultLabel, Counter>::default();
        registry.register(
            "agora_settlements",
            "Settlements this provider asked the ledger for: paid, or refused for good",
            settlements.clone(),
        );
        // 5 ms … about 22 minutes.
        let settlement_latency = Histogram::new(exponential_buckets(0.005, 2.0, 19));
        registry.register(
            "agora_settlement_latency_seconds",
            "Seconds from the countersignature of the receipt settled to the ledger's payment \
             (retries through a ledger outage included)",
            settlement_latency.clone(),
        );
        let ledger_errors = Family::<LedgerErrorLabels, Counter>::default();
        registry.register(
            "agora_ledger_errors",
            "Ledger calls that failed, by operation and error",
            ledger_errors.clone(),
        );
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "agora_api_requests",
            "API requests answered, by method, route template and status",
            api_requests.clone(),
        );
        let api_connections_closed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "agora_api_connections_closed",
            "API connections the server refused or closed to protect itself, by reason \
             (max_connections, unauthenticated_evicted, unauthenticated_timeout)",
            api_connections_closed.clone(),
        );
        let api_rate_limited = Counter::default();
        registry.register(
            "agora_api_rate_limited",
            "API requests without a valid token refused with 429 (per-address rate limit)",
            api_rate_limited.clone(),
        );
        Self {
            registry: Arc::new(registry),
            gossip,
            orders_seen,
            bids,
            declines,
            orders_unanswered,
            leases_signed,
            receipts_signed,
            receipts_countersigned,
            job_events,
            settlements,
            settlement_latency,
            ledger_errors,
            api_requests,
            api_connections_closed,
            api_rate_limited,
        }
    }

    /// The counters and histograms, then the snapshot's gauges, as one
    /// OpenMetrics exposition.
    pub fn encode(&self, snapshot: &snapshot::Snapshot) -> Result<String, std::fmt::Error> {
        use prometheus_client::encoding::text;
        let mut out = String::with_capacity(16 * 1024);
        text::encode_registry(&mut out, &self.registry)?;
        text::encode_registry(&mut out, &snapshot.registry())?;
        text::encode_eof(&mut out)?;
        Ok(out)
    }

    /// A requester's job event went into its log.
    pub fn job_event(&self, name: &str) {
        use crate::requester::events::JobEventKind;
        let kind = JobEventKind::from_name(name);
        self.job_events
            .get_or_create(&EventLabel { event: kind.name() })
            .inc();
        match kind {
            JobEventKind::Receipt => self.countersigned("requester"),
            JobEventKind::LeaseSigned => self.lease_signed("requester"),
            _ => {}
        }
    }

    /// A lease was signed on `role`'s side.
    pub fn lease_signed(&self, role: &'static str) {
        self.leases_signed.get_or_create(&RoleLabel { role }).inc();
    }

    /// A receipt was countersigned on `role`'s side.
    pub fn countersigned(&self, role: &'static str) {
        self.receipts_countersigned
            .get_or_create(&RoleLabel { role })
            .inc();
    }

    /// A provider's answer to an order: a bid, or a decline with its
    /// reason.
    pub fn order_answered(&self, decline: Option<agora_protocol::DeclineReason>) {
        match decline {
            None => {
                self.bids.inc();
            }
            Some(reason) => {
                self.declines
                    .get_or_create(&ReasonLabel {
                        reason: snapshot::decline_reason(reason),
                    })
                    .inc();
            }
        }
    }

    /// An order this provider dropped without answering, and why
    /// (`busy`: too many balance reads waiting on the ledger).
    pub fn order_unanswered(&self, reason: &'static str) {
        self.orders_unanswered
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A settlement: paid after `latency_secs`, or refused.
    pub fn settled(&self, latency_secs: Option<f64>) {
        match latency_secs {
            Some(secs) => {
                self.settlements
                    .get_or_create(&ResultLabel { result: "paid" })
                    .inc();
                self.settlement_latency.observe(secs);
            }
            None => {
                self.settlements
                    .get_or_create(&ResultLabel { result: "refused" })
                    .inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use agora_protocol::DeclineReason;

    use super::*;
    use crate::metrics::snapshot::Snapshot;

    fn text(m: &Metrics) -> String {
        m.encode(&Snapshot::default()).unwrap()
    }

    #[test]
    fn the_text_format_names_counter_families_by_their_samples() {
        let m = Metrics::new();
        m.bids.inc();
        m.settled(Some(1.0));
        let open = text(&m);
        assert!(
            open.contains("# TYPE agora_bids counter\nagora_bids_total 1\n"),
            "{open}"
        );
        let text = to_text_format(&open);
        assert!(
            text.contains(
                "# HELP agora_bids_total Bids this provider decided to send (one per order).\n\
                 # TYPE agora_bids_total counter\nagora_bids_total 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE agora_settlement_latency_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("agora_settlement_latency_seconds_count 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=1.0.0;q=0.7")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn a_requesters_job_events_move_their_counters_and_the_named_ones() {
        let m = Metrics::new();
        m.job_event("lease_signed");
        m.job_event("receipt");
        m.job_event("receipt");
        m.job_event("not an event");
        let t = text(&m);
        for line in [
            "agora_job_events_total{event=\"receipt\"} 2",
            "agora_job_events_total{event=\"other\"} 1",
            "agora_receipts_countersigned_total{role=\"requester\"} 2",
            "agora_leases_signed_total{role=\"requester\"} 1",
        ] {
            assert!(t.contains(line), "{line} not in\n{t}");
        }
        assert!(!t.contains("not an event"), "{t}");
    }

    #[test]
    fn a_providers_answers_and_settlements_are_counted() {
        let m = Metrics::new();
        m.orders_seen.inc();
        m.order_answered(None);
        m.order_answered(Some(DeclineReason::NoCapacity));
        m.order_answered(Some(DeclineReason::Price));
        m.order_answered(Some(DeclineReason::Price));
        m.settled(Some(0.02));
        m.settled(Some(3.0));
        m.settled(None);
        let t = text(&m);
        for line in [
            "agora_orders_seen_total 1",
            "agora_bids_total 1",
            "agora_declines_total{reason=\"price\"} 2",
            "agora_declines_total{reason=\"no_capacity\"} 1",
            "agora_settlements_total{result=\"paid\"} 2",
            "agora_settlements_total{result=\"refused\"} 1",
            "agora_settlement_latency_seconds_count 2",
            "agora_settlement_latency_seconds_sum 3.02",
            "agora_settlement_latency_seconds_bucket{le=\"0.04\"} 1",
        ] {
            assert!(t.contains(line), "{line} not in\n{t}");
        }
    }
}
