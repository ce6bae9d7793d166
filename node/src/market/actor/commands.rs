//! The router's answers to the API: node info, search, one offer, submit,
//! jobs, cancel, provider status. Views come from `views.rs`.

use agora_client::api::{
    JobSpec, JobView, LeaseStatus, NodeInfo, OfferArrivals, OffersPage, ProviderStatus,
};
use agora_protocol::matching::fit;
use agora_protocol::{OfferId, Order, OrderId, Query, SortKey, Timestamp};

use super::Router;
use crate::clock::now;
use crate::market::error::MarketError;
use crate::market::handle::Command;
use crate::metrics::snapshot::{MarketGauges, job_state};
use crate::provider::exec::Executor;
use crate::views::{
    gpu_view, job_view, lease_view, offer_view, provider_lease_status, requester_lease_status,
};

impl Router {
    // ---- commands ----

    pub(super) async fn handle_command(&mut self, command: Command) {
        let now = now();
        match command {
            Command::Info(reply) => {
                let _ = reply.send(self.info().await);
            }
            Command::Search {
                query,
                sort,
                limit,
                reply,
            } => {
                let _ = reply.send(self.search(&query, sort.as_deref(), limit, now));
            }
            Command::Offer { id, reply } => {
                let result = id
                    .parse::<OfferId>()
                    .map_err(|e| MarketError::bad_request(format!("offer id: {e}"), None))
                    .and_then(|id| {
                        self.book
                            .get(&id)
                            .map(offer_view)
                            .ok_or_else(|| MarketError::not_found(format!("no offer {id}")))
                    });
                let _ = reply.send(result);
            }
            Command::Submit {
                order,
                spec,
                offer,
                reply,
            } => {
                let _ = reply.send(self.submit(order, *spec, offer, now).await);
            }
            Command::Jobs(reply) => {
                let mut jobs: Vec<JobView> = self.requester.jobs().map(job_view).collect();
                jobs.sort_by_key(|j| j.submitted_at);
                let _ = reply.send(Ok(jobs));
            }
            Command::Job { id, reply } => {
                let result = parse_job(&id).and_then(|id| {
                    self.requester
                        .job(&id)
                        .map(job_view)
                        .ok_or_else(|| MarketError::not_found(format!("no job {id}")))
                });
                let _ = reply.send(result);
            }
            Command::Provider(reply) => {
                let _ = reply.send(self.provider_status(now));
            }
            Command::Arrivals {
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(Ok::<OfferArrivals, MarketError>(
                    self.arrivals.after(after, limit),
                ));
            }
            Command::Cancel { id, reply } => {
                let _ = reply.send(self.cancel_job(&id, now).await);
            }
            Command::Gauges(reply) => {
                let _ = reply.send(Ok(self.gauges()));
            }
        }
    }

    async fn submit(
        &mut self,
        order: Order,
        spec: JobSpec,
        offer: Option<String>,
        now: Timestamp,
    ) -> Result<JobView, MarketError> {
        // The instant path checks the offer before anything is signed.
        let chosen = match &offer {
            None => None,
            Some(id) => {
                let id: OfferId = id.parse().map_err(|e| {
                    MarketError::bad_request(format!("offer id: {e}"), Some("offer".into()))
                })?;
                let signed = self.book.get(&id).ok_or_else(|| {
                    MarketError::not_found(format!(
                        "offer {id} is not in this node's book (expired, or not yet received)"
                    ))
                })?;
                fit(&order, signed.message(), now).map_err(|(reason, detail)| {
                    MarketError::bad_request(
                        format!("offer {id} does not meet the job: {reason:?}: {detail}"),
                        Some("offer".into()),
                    )
                })?;
                Some(signed.clone())
            }
        };
        let id = self.requester.submit(order, spec, chosen, now)?;
        self.carry_out().await;
        // Accepted means durable.
        self.store
            .flush()
            .map_err(|e| MarketError::internal(e.to_string()))?;
        self.requester
            .job(&id)
            .map(job_view)
            .ok_or_else(|| MarketError::internal("the job vanished"))
    }

    async fn cancel_job(&mut self, id: &str, now: Timestamp) -> Result<JobView, MarketError> {
        let order = id
            .parse::<OrderId>()
            .map_err(|_| MarketError::not_found(format!("no job {id}")))?;
        self.requester.cancel(&order, now)?;
        self.carry_out().await;
        self.store
            .flush()
            .map_err(|e| MarketError::internal(e.to_string()))?;
        self.requester
            .job(&order)
            .map(job_view)
            .ok_or_else(|| MarketError::not_found(format!("no job {id}")))
    }

    async fn info(&self) -> Result<NodeInfo, MarketError> {
        let net = self
            .network
            .info()
            .await
            .map_err(|e| MarketError::internal(e.to_string()))?;
        Ok(NodeInfo {
            peer_id: net.peer_id.to_string(),
            account: self.key.public(),
            role: self.role,
            listen_addrs: net.listen_addrs.iter().map(ToString::to_string).collect(),
            connected_peers: u32::try_from(net.connected_peers).unwrap_or(u32::MAX),
            mesh_peers: u32::try_from(net.mesh_peers).unwrap_or(u32::MAX),
            offers_in_book: u32::try_from(self.book.len()).unwrap_or(u32::MAX),
            gossip_accepted: net.gossip_accepted,
            gossip_rejected: net.gossip_rejected,
            version: env!("CARGO_PKG_VERSION").into(),
            market_loop: self.stats.view(),
            tasks: self.pool.counts(),
        })
    }

    fn search(
        &self,
        query: &str,
        sort: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<OffersPage, MarketError> {
        let parsed = Query::parse(query).map_err(|e| {
            MarketError::bad_request(e.to_string(), Some(format!("column {}", e.column)))
        })?;
        let sort = sort
            .map(|s| {
                s.parse::<SortKey>().map_err(|e| {
                    MarketError::bad_request(format!("sort: {e}"), Some("sort".into()))
                })
            })
            .transpose()?;
        let offers = self
            .book
            .search(&parsed, sort, limit.clamp(1, 1000), now)
            .into_iter()
            .map(offer_view)
            .collect();
        Ok(OffersPage {
            query: query.to_string(),
            offers,
            book_size: u32::try_from(self.book.len()).unwrap_or(u32::MAX),
        })
    }

    /// The metrics' view of the market, from memory: nothing awaited, so
    /// a scrape costs the loop one pass over its jobs and leases.
    fn gauges(&self) -> MarketGauges {
        let mut gauges = MarketGauges {
            book_offers: self.book.len() as u64,
            ..MarketGauges::default()
        };
        let tasks = self.pool.counts();
        gauges.tasks_running = tasks.running;
        gauges.tasks_queued = tasks.queued;
        for job in self.requester.jobs() {
            *gauges.jobs.entry(job_state(job.state)).or_default() += 1;
            if let Some(status) = requester_lease_status(job) {
                *gauges
                    .leases
                    .entry(("requester", status.as_str()))
                    .or_default() += 1;
            }
        }
        if let Some(provider) = &self.provider {
            let (runs, earned) = self
                .executor
                .as_ref()
                .map(Executor::views)
                .unwrap_or_default();
            let by_lease: std::collections::HashMap<&str, &agora_client::api::RunView> =
                runs.iter().map(|r| (r.lease_id.as_str(), r)).collect();
            for lease in provider.role().leases() {
                let run = by_lease.get(lease.id().to_string().as_str()).copied();
                let status = provider_lease_status(lease, run);
                *gauges
                    .leases
                    .entry(("provider", status.as_str()))
                    .or_default() += 1;
            }
            for run in &runs {
                let state = match (run.closed, run.state.as_str()) {
                    (true, _) => "closed",
                    (false, "starting") => "starting",
                    (false, "running") => "running",
                    (false, "ended") => "ended",
                    (false, _) => "other",
                };
                *gauges.runs.entry(state).or_default() += 1;
            }
            gauges.earned = Some(earned);
        }
        gauges
    }

    fn provider_status(&self, now: Timestamp) -> Result<ProviderStatus, MarketError> {
        let Some(provider) = &self.provider else {
            return Err(MarketError::not_found(
                "this node is a requester; start it with `agorad provider` to rent out GPUs",
            ));
        };
        let role = provider.role();
        let inventory = role.inventory();
        let mine = self.key.public();
        let (runs, earned) = self
            .executor
            .as_ref()
            .map(Executor::views)
            .unwrap_or_default();
        Ok(ProviderStatus {
            driver: inventory.driver.clone(),
            nvml_unavailable: inventory.nvml_unavailable.clone(),
            gpus: inventory.gpus.iter().map(gpu_view).collect(),
            offers: self
                .book
                .iter()
                .filter(|o| o.message().provider == mine)
                .map(offer_view)
                .collect(),
            reservations: role.reservation_views(now),
            leases: role
                .leases()
                .map(|l| {
                    let id = l.id().to_string();
                    let run = runs.iter().find(|r| r.lease_id == id);
                    let status = provider_lease_status(l, run);
                    lease_view(l, status != LeaseStatus::Unfunded, status)
                })
                .collect(),
            orders_seen: role.orders_seen,
            bids_sent: role.bids_sent,
            declines_sent: role.declines_sent,
            runs,
            earned,
            runtime_unavailable: role.unavailable().map(str::to_owned),
        })
    }
}

fn parse_job(id: &str) -> Result<OrderId, MarketError> {
    id.parse::<OrderId>()
        .map_err(|e| MarketError::bad_request(format!("job id: {e}"), None))
}
