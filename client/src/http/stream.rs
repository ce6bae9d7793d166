//! Following a job's log stream (`GET /v1/jobs/{id}/stream`), reconnecting
//! when the connection drops.

use std::collections::VecDeque;
use std::time::Duration;

use reqwest::{Method, StatusCode, header};

use super::{ClientError, NodeClient};
use crate::api::{JobLogEntry, JobView};
use crate::sse::{SseEvent, SseParser};

/// How a [`JobStream`] retries a dropped connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// Reconnects tried in a row (without an entry in between) before
    /// giving up with [`ClientError::StreamLost`].
    pub max_attempts: u32,
    /// The wait before the first reconnect; it doubles after each failure.
    pub first_delay: Duration,
    /// The longest wait between reconnects.
    pub max_delay: Duration,
    /// Silence after which the connection counts as dead (the node sends a
    /// keep-alive comment every 15 s).
    pub idle_timeout: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(45),
        }
    }
}

/// What the stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// The next entry of the job's log, in sequence.
    Entry(JobLogEntry),
    /// The job is terminal and every entry was sent: its final view. The
    /// stream yields nothing after this.
    End(Box<JobView>),
}

/// A job's live log; call [`JobStream::next`] until it returns `None`.
#[derive(Debug)]
pub struct JobStream {
    client: NodeClient,
    id: String,
    /// The last sequence yielded (or asked to start after).
    after: u64,
    reconnect: Reconnect,
    response: Option<reqwest::Response>,
    parser: SseParser,
    pending: VecDeque<SseEvent>,
    /// Failed reconnects since the last entry.
    failures: u32,
    /// Reconnects made in all.
    reconnects: u32,
    ended: bool,
}

impl JobStream {
    pub(super) fn new(client: NodeClient, id: &str, after: u64) -> Self {
        Self {
            client,
            id: id.to_string(),
            after,
            reconnect: Reconnect::default(),
            response: None,
            parser: SseParser::new(),
            pending: VecDeque::new(),
            failures: 0,
            reconnects: 0,
            ended: false,
        }
    }

    /// The same stream with another reconnect policy.
    pub fn with_reconnect(mut self, reconnect: Reconnect) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// The last sequence yielded.
    pub fn last_seq(&self) -> u64 {
        self.after
    }

    /// How often the stream reconnected so far.
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// The next entry, the end, or `None` after the end. Errors are final:
    /// the node refused the stream (401, 404), the stream is malformed, or
    /// it broke and did not come back within [`Reconnect::max_attempts`].
    pub async fn next(&mut self) -> Result<Option<StreamItem>, ClientError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            while let Some(event) = self.pending.pop_front() {
                if let Some(item) = self.accept(event)? {
                    return Ok(Some(item));
                }
            }
            let reason = match self.response.as_mut() {
                None => match self.connect().await {
                    Ok(response) => {
                        self.response = Some(response);
                        continue;
                    }
                    Err(Retry::Fatal(e)) => return Err(e),
                    Err(Retry::Again(reason)) => reason,
                },
                Some(response) => {
                    match tokio::time::timeout(self.reconnect.idle_timeout, response.chunk()).await
                    {
                        Ok(Ok(Some(chunk))) => {
                            let mut events = Vec::new();
                            let parsed = self.parser.push(&chunk, &mut events);
                            self.pending.extend(events);
                            if let Err(e) = parsed {
                                return Err(self.malformed(e.to_string()));
                            }
                            continue;
                        }
                        Ok(Ok(None)) => "the node closed the stream before its end".to_string(),
                        Ok(Err(e)) => super::error_chain(&e),
                        Err(_) => format!(
                            "nothing arrived for {}s",
                            self.reconnect.idle_timeout.as_secs()
                        ),
                    }
                }
            };
            self.drop_connection();
            self.failures += 1;
            if self.failures > self.reconnect.max_attempts {
                return Err(ClientError::StreamLost {
                    url: self.url().to_string(),
                    attempts: self.reconnect.max_attempts,
                    reason,
                });
            }
            let exp = self.failures.saturating_sub(1).min(16);
            let delay = self
                .reconnect
                .first_delay
                .saturating_mul(1 << exp)
                .min(self.reconnect.max_delay);
            tokio::time::sleep(delay).await;
            self.reconnects += 1;
        }
    }

    /// Turns one event into an item; `None` for an event to skip (a
    /// repeat, an unknown kind).
    fn accept(&mut self, event: SseEvent) -> Result<Option<StreamItem>, ClientError> {
        match event.event.as_str() {
            "end" => {
                let job: JobView = serde_json::from_str(&event.data)
                    .map_err(|e| self.malformed(format!("the end event: {e}")))?;
                self.ended = true;
                self.drop_connection();
                Ok(Some(StreamItem::End(Box::new(job))))
            }
            "event" | "stdout" | "stderr" => {
                let entry: JobLogEntry = serde_json::from_str(&event.data)
                    .map_err(|e| self.malformed(format!("an entry: {e}")))?;
                if entry.seq <= self.after {
                    // Sent again after a reconnect: already yielded.
                    return Ok(None);
                }
                if Some(entry.seq) != self.after.checked_add(1) {
                    return Err(self.malformed(format!(
                        "entry {} came after {} (the log has no gaps)",
                        entry.seq, self.after
                    )));
                }
                self.after = entry.seq;
                self.failures = 0;
                Ok(Some(StreamItem::Entry(entry)))
            }
            // Kinds this client does not know yet.
            _ => Ok(None),
        }
    }

    async fn connect(&self) -> Result<reqwest::Response, Retry> {
        let url = self.url();
        let shown = url.to_string();
        let request = self
            .client
            .request(Method::GET, url)
            .header(header::ACCEPT, "text/event-stream")
            .header("Last-Event-ID", self.after.to_string());
        // No request timeout: it would cover the endless body. The headers
        // get the client's timeout, the body the idle timeout.
        let response = match tokio::time::timeout(self.client.timeout, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                return Err(Retry::Again(
                    self.client.transport_error(&shown, e).to_string(),
                ));
            }
            Err(_) => {
                return Err(Retry::Again(format!(
                    "no answer within {}s",
                    self.client.timeout.as_secs()
                )));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let error = self.client.error_answer(&shown, response).await;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(Retry::Again(error.to_string()))
        } else {
            Err(Retry::Fatal(error))
        }
    }

    fn drop_connection(&mut self) {
        self.response = None;
        // A half-received event of the old connection is discarded; the new
        // one resends it whole.
        self.parser = SseParser::new();
        self.pending.clear();
    }

    fn url(&self) -> reqwest::Url {
        let mut url = self.client.url(&["jobs", &self.id, "stream"]);
        url.query_pairs_mut()
            .append_pair("after", &self.after.to_string());
        url
    }

    fn malformed(&self, reason: String) -> ClientError {
        ClientError::BadStream {
            url: self.url().to_string(),
            reason,
        }
    }
}

/// Why connecting failed.
enum Retry {
    /// Worth another try (transport error, 5xx).
    Again(String),
    /// Not (401, 404, 4xx).
    Fatal(ClientError),
}
