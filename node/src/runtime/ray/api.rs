//! The slice of Ray's dashboard HTTP API the runtime uses: the Job
//! Submission REST API (`/api/jobs/…`), `/api/version` for health and
//! `/nodes?view=summary` for the cluster's GPUs. Every response body is
//! read up to a bound.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest body read from any answer but a job's logs.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Why a call to the head failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RayError {
    /// No answer: connection refused, timeout, reset.
    #[error("the Ray head at {base} does not answer: {detail}")]
    Unreachable {
        /// Dashboard URL.
        base: String,
        /// What failed.
        detail: String,
    },
    /// An answer that is an error or cannot be read.
    #[error("the Ray head at {base} answered {what}: {detail}")]
    Bad {
        /// Dashboard URL.
        base: String,
        /// Which call, and the HTTP status when there is one.
        what: String,
        /// The body's start or the decoding error.
        detail: String,
    },
}

/// A job as Ray reports it (`GET /api/jobs/{id}`); fields not read here
/// are ignored.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JobInfo {
    /// PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED.
    pub(crate) status: String,
    /// Ray's explanation, when it gives one.
    #[serde(default)]
    pub(crate) message: Option<String>,
    /// The entrypoint's exit status, once it ended (Ray 2.10+).
    #[serde(default)]
    pub(crate) driver_exit_code: Option<i32>,
}

/// What `POST /api/jobs/` takes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Submission {
    pub(crate) entrypoint: String,
    pub(crate) submission_id: String,
    pub(crate) runtime_env: serde_json::Value,
    pub(crate) metadata: std::collections::BTreeMap<String, String>,
    pub(crate) entrypoint_num_cpus: f64,
    pub(crate) entrypoint_num_gpus: f64,
}

#[derive(Deserialize)]
struct Logs {
    logs: String,
}

/// A client for one head's dashboard.
#[derive(Debug, Clone)]
pub(crate) struct RayApi {
    base: String,
    http: reqwest::Client,
}

impl RayApi {
    /// A client for the dashboard at `base` (no trailing `/`); each
    /// request gives up after `timeout`. Proxies from the environment are
    /// ignored: the head is the provider's own.
    pub(crate) fn new(base: &str, timeout: Duration) -> Result<Self, RayError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| RayError::Bad {
                base: base.to_owned(),
                what: "nothing (the HTTP client cannot be built)".into(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            base: base.to_owned(),
            http,
        })
    }

    /// The dashboard URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Ray's version, from `/api/version`: the health check.
    pub(crate) async fn version(&self) -> Result<String, RayError> {
        #[derive(Deserialize)]
        struct Version {
            ray_version: String,
        }
        let body = self.get("/api/version", MAX_BODY).await?;
        let v: Version = self.decode("/api/version", &body)?;
        Ok(v.ray_version)
    }

    /// GPUs over the cluster's alive nodes, from `/nodes?view=summary`.
    pub(crate) async fn cluster_gpus(&self) -> Result<f64, RayError> {
        let path = "/nodes?view=summary";
        let body = self.get(path, MAX_BODY).await?;
        let value: serde_json::Value = self.decode(path, &body)?;
        gpus_of_summary(&value).ok_or_else(|| RayError::Bad {
            base: self.base.clone(),
            what: format!("{path} in an unknown shape"),
            detail: "no data.summary[].raylet.resourcesTotal".into(),
        })
    }

    /// Submits a job.
    pub(crate) async fn submit(&self, submission: &Submission) -> Result<(), RayError> {
        let path = "/api/jobs/";
        let resp = self
            .http
            .post(self.url(path))
            .json(submission)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.body(path, resp, MAX_BODY).await.map(|_| ())
    }

    /// A job's state.
    pub(crate) async fn job(&self, id: &str) -> Result<JobInfo, RayError> {
        let path = format!("/api/jobs/{id}");
        let body = self.get(&path, MAX_BODY).await?;
        self.decode(&path, &body)
    }

    /// A job's whole log so far; `Ok(None)` when it is over `max` bytes.
    pub(crate) async fn logs(&self, id: &str, max: usize) -> Result<Option<String>, RayError> {
        let path = format!("/api/jobs/{id}/logs");
        // JSON escaping at most doubles most text; leave room for it.
        match self
            .get(&path, max.saturating_mul(2).saturating_add(1024))
            .await
        {
            Ok(body) => {
                let logs: Logs = self.decode(&path, &body)?;
                Ok((logs.logs.len() <= max).then_some(logs.logs))
            }
            Err(RayError::Bad { detail, .. }) if detail.starts_with(TOO_LARGE) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks Ray to stop a job.
    pub(crate) async fn stop(&self, id: &str) -> Result<(), RayError> {
        let path = format!("/api/jobs/{id}/stop");
        let resp = self
            .http
            .post(self.url(&path))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.body(&path, resp, MAX_BODY).await.map(|_| ())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, e: reqwest::Error) -> RayError {
        RayError::Unreachable {
            base: self.base.clone(),
            detail: error_chain(&e),
        }
    }

    async fn get(&self, path: &str, max: usize) -> Result<Vec<u8>, RayError> {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.body(path, resp, max).await
    }

    /// Reads at most `max` bytes of a successful answer's body.
    async fn body(
        &self,
        path: &str,
        mut resp: reqwest::Response,
        max: usize,
    ) -> Result<Vec<u8>, RayError> {
        let status = resp.status();
        let mut body = Vec::new();
        let mut over = false;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        over = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.unreachable(e)),
            }
        }
        if !status.is_success() {
            return Err(RayError::Bad {
                base: self.base.clone(),
                what: format!("{status} to {path}"),
                detail: excerpt(&body),
            });
        }
        if over {
            return Err(RayError::Bad {
                base: self.base.clone(),
                what: path.to_owned(),
                detail: format!("{TOO_LARGE} ({max} bytes)"),
            });
        }
        Ok(body)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &[u8],
    ) -> Result<T, RayError> {
        serde_json::from_slice(body).map_err(|e| RayError::Bad {
            base: self.base.clone(),
            what: format!("{path} with a body that is not what Ray sends"),
            detail: format!("{e}; {}", excerpt(body)),
        })
    }
}

const TOO_LARGE: &str = "the answer is larger than allowed";

/// The first 200 bytes of a body, as text.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().to_owned()
}

/// A reqwest error with its sources ("error sending request: connection
/// refused").
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Sums `GPU` over the alive nodes of a `/nodes?view=summary` answer.
pub(crate) fn gpus_of_summary(value: &serde_json::Value) -> Option<f64> {
    let nodes = value.get("data")?.get("summary")?.as_array()?;
    let mut total = 0.0;
    for node in nodes {
        let raylet = node.get("raylet")?;
        let alive = raylet
            .get("state")
            .and_then(serde_json::Value::as_str)
            .is_none_or(|s| s == "ALIVE");
        if !alive {
            continue;
        }
        let resources = raylet.get("resourcesTotal")?;
        total += resources
            .get("GPU")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_summed_over_alive_nodes() {
        let summary = serde_json::json!({
            "result": true,
            "data": {"summary": [
                {"raylet": {"state": "ALIVE", "resourcesTotal": {"CPU": 2.0, "GPU": 2.0}}},
                {"raylet": {"state": "DEAD", "resourcesTotal": {"GPU": 8.0}}},
                {"raylet": {"state": "ALIVE", "resourcesTotal": {"CPU": 4.0}}},
                {"raylet": {"state": "ALIVE", "resourcesTotal": {"GPU": 4.0}}}
            ]}
        });
        assert_eq!(gpus_of_summary(&summary), Some(6.0));
        assert_eq!(gpus_of_summary(&serde_json::json!({"data": {}})), None);
    }

    #[test]
    fn a_job_answer_decodes_with_unknown_fields() {
        let body = br#"{"type": "SUBMISSION", "job_id": null, "submission_id": "agora-x",
            "status": "FAILED", "message": "Job entrypoint command failed with exit code 3",
            "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR", "driver_exit_code": 3}"#;
        let info: JobInfo = serde_json::from_slice(body).unwrap();
        assert_eq!(
            (info.status.as_str(), info.driver_exit_code),
            ("FAILED", Some(3))
        );
        let pending: JobInfo = serde_json::from_slice(br#"{"status": "PENDING"}"#).unwrap();
        assert_eq!((pending.message, pending.driver_exit_code), (None, None));
    }
}
