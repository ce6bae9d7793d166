//! A job spec becomes an [`Order`]: units converted (GiB → MiB, TFLOPS →
//! milli-TFLOPS, compute capability 8.6 → 86, "2.5" AGR → base units) and
//! every value checked, so a mistake is named by its spec key before
//! anything is signed or published.

use std::fmt;

use agora_client::api::JobSpec;
use agora_protocol::offer::{MAX_GPUS, MAX_MODEL_LEN, MAX_REGION_LEN};
use agora_protocol::order::{MAX_BID_WINDOW_MS, MAX_DURATION_SECS};
use agora_protocol::{
    Amount, Energy, InputFile, JobPayload, LeaseId, Order, PublicKey, SandboxLimits, Timestamp,
    WireMessage,
};
use base64::Engine as _;

use agora_protocol::offer::normalize_model;

/// How long an order stays open after its bid window closes, so that a
/// requester's lease proposal is not refused as late.
pub const ORDER_GRACE_MS: u64 = 30_000;

/// Most VRAM an order may ask for per GPU, GiB (the most an offer can state).
pub const MAX_VRAM_GIB: u64 = 16 * 1024;

/// Most FP32 TFLOPS an order may ask for per GPU (the most an offer can state).
pub const MAX_TFLOPS: f64 = 100_000.0;

/// Longest runtime name.
const MAX_RUNTIME_LEN: usize = 16;

/// A job spec value that cannot become an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// The dotted spec key, e.g. `market.max_price_per_gpu_hour`.
    pub field: String,
    /// What is wrong and what to write instead.
    pub reason: String,
}

impl SpecError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// The order `requester` places for `spec` at `now`, with `nonce` making it
/// unique. It opens at `now` and takes bids until
/// `now + bid_window + ORDER_GRACE_MS`.
///
/// The result always passes the protocol's own validation: every range the
/// wire checks is checked here first, under the spec key a person wrote.
pub fn order_from_spec(
    spec: &JobSpec,
    requester: &PublicKey,
    nonce: [u8; 16],
    now: Timestamp,
) -> Result<Order, SpecError> {
    let resources = &spec.resources;
    let constraints = &spec.constraints;
    let market = &spec.market;

    if resources.gpus == 0 || resources.gpus > MAX_GPUS {
        return Err(SpecError::new(
            "resources.gpus",
            format!("{} is outside 1..={MAX_GPUS}", resources.gpus),
        ));
    }
    let gpu_model = resources
        .gpu_model
        .as_deref()
        .map(|m| label("resources.gpu_model", m, MAX_MODEL_LEN, true))
        .transpose()?;
    if resources.min_vram_gib > MAX_VRAM_GIB {
        return Err(SpecError::new(
            "resources.min_vram_gib",
            format!(
                "{} GiB is more than any GPU offers (at most {MAX_VRAM_GIB})",
                resources.min_vram_gib
            ),
        ));
    }
    let min_fp32_mtflops = decimal(
        "resources.min_tflops",
        resources.min_tflops,
        MAX_TFLOPS,
        1000.0,
        "a number of TFLOPS like 19.5",
    )?;
    let min_compute_capability = decimal(
        "resources.min_compute_capability",
        resources.min_compute_capability,
        25.5,
        10.0,
        "a compute capability like 8.6",
    )?;
    if (resources.min_compute_capability * 10.0 - min_compute_capability as f64).abs() > 1e-6 {
        return Err(SpecError::new(
            "resources.min_compute_capability",
            format!(
                "{} has more than one decimal; write it like 8.6",
                resources.min_compute_capability
            ),
        ));
    }
    let region = constraints
        .region
        .as_deref()
        .map(|r| label("constraints.region", r, MAX_REGION_LEN, false))
        .transpose()?;
    let jurisdiction = constraints
        .jurisdiction
        .as_deref()
        .map(country)
        .transpose()?;

    let max_price = market
        .max_price_per_gpu_hour
        .trim()
        .parse::<Amount>()
        .map_err(|e| SpecError::new("market.max_price_per_gpu_hour", e.to_string()))?;
    if max_price == Amount::ZERO {
        return Err(SpecError::new(
            "market.max_price_per_gpu_hour",
            "0 would rent nothing: no provider bids for free; set the most you will pay \
             per GPU-hour, like \"2.5\"",
        ));
    }
    if max_price.0 > u64::MAX / 4 {
        return Err(SpecError::new(
            "market.max_price_per_gpu_hour",
            format!("{max_price} AGR is more than the ledger can escrow"),
        ));
    }
    if market.max_duration_secs == 0 || market.max_duration_secs > MAX_DURATION_SECS {
        return Err(SpecError::new(
            "market.max_duration_secs",
            format!(
                "{} is outside 1..={MAX_DURATION_SECS} seconds (30 days)",
                market.max_duration_secs
            ),
        ));
    }
    if market.bid_window_ms == 0 || market.bid_window_ms > MAX_BID_WINDOW_MS {
        return Err(SpecError::new(
            "market.bid_window_ms",
            format!(
                "{} is outside 1..={MAX_BID_WINDOW_MS} milliseconds",
                market.bid_window_ms
            ),
        ));
    }
    let runtime = label("runtime", &spec.runtime, MAX_RUNTIME_LEN, false)?;

    Ok(Order {
        network: spec.constraints.network,
        needs: SandboxLimits {
            pids: resources.processes,
            memory_mib: resources.memory_mib,
            disk_mib: resources.disk_mib,
            tmp_mib: resources.tmp_mib,
            cpu_weight: 0,
            cgroup: constraints.enforced_limits,
        },
        requester: *requester,
        nonce: nonce.to_vec(),
        gpu_count: resources.gpus,
        gpu_model,
        min_vram_mib: resources.min_vram_gib * 1024,
        min_fp32_mtflops,
        min_compute_capability: u32::try_from(min_compute_capability).unwrap_or(u32::MAX),
        region,
        jurisdiction,
        energy: constraints.energy.unwrap_or(Energy::Unknown),
        require_verified: constraints.verified,
        allow_simulated: constraints.allow_simulated,
        max_price_per_gpu_hour: max_price,
        max_duration_secs: market.max_duration_secs,
        bid_window_ms: market.bid_window_ms,
        runtime,
        created_at: now,
        expires_at: now.plus_ms(u64::from(market.bid_window_ms) + ORDER_GRACE_MS),
    })
}

/// Whether the job itself (what runs, not what it rents) passes the
/// provider's own checks: a submission calls it before anything is signed,
/// so a job the provider would refuse never locks an escrow. (`agorad
/// provider price --dry-run` prices specs without a command, so
/// [`order_from_spec`] does not.)
pub fn check_job(spec: &JobSpec) -> Result<(), SpecError> {
    payload_of(spec, LeaseId([0; 32])).map(|_| ())
}

/// The job `spec` as the payload sent under `lease`, checked by the very
/// rules the provider decodes it with (`JobPayload`'s validation in
/// `protocol`): command, environment, input paths and counts, sizes.
/// Inputs must be valid base64. A failure names the spec key.
pub fn payload_of(spec: &JobSpec, lease: LeaseId) -> Result<JobPayload, SpecError> {
    let mut inputs = Vec::with_capacity(spec.inputs.len());
    for (i, input) in spec.inputs.iter().enumerate() {
        let content = match input.data_b64.as_deref() {
            None => Vec::new(),
            Some(data) => base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| {
                    SpecError::new(
                        &format!("inputs[{i}].data_b64"),
                        format!("{:?} is not valid base64: {e}", input.path),
                    )
                })?,
        };
        inputs.push(InputFile {
            path: input.path.clone(),
            blake3: *blake3::hash(&content).as_bytes(),
            content,
        });
    }
    let payload = JobPayload {
        lease_id: lease,
        runtime: spec.runtime.clone(),
        command: spec.command.clone(),
        env: spec.env.clone().into_iter().collect(),
        inputs,
        network: spec.constraints.network,
    };
    JobPayload::from_proto(payload.to_proto()).map_err(|e| {
        let field = match e.field {
            "env.name" | "env.value" => "env",
            "inputs.path" | "inputs.blake3" => "inputs",
            other => other,
        };
        SpecError::new(field, e.reason)
    })?;
    Ok(payload)
}

/// A wire label: 1..=`max` characters of `[A-Za-z0-9._-]`. For a GPU model
/// (`model`), a rejected name comes with the spelling offers use.
fn label(field: &str, value: &str, max: usize, model: bool) -> Result<String, SpecError> {
    if value.is_empty() {
        return Err(SpecError::new(
            field,
            "is empty; leave the key out to accept any",
        ));
    }
    if value.len() > max {
        return Err(SpecError::new(
            field,
            format!("{} characters; at most {max}", value.len()),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let hint = if model {
            format!(
                "; GPU models are written as offers show them, e.g. {:?}",
                normalize_model(value)
            )
        } else {
            String::new()
        };
        return Err(SpecError::new(
            field,
            format!("character {c:?} is not allowed (use A-Z, a-z, 0-9, '.', '_', '-'){hint}"),
        ));
    }
    Ok(value.to_string())
}

/// A two-letter country code; lowercase is accepted and raised.
fn country(value: &str) -> Result<String, SpecError> {
    let upper = value.to_ascii_uppercase();
    if upper.len() != 2 || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(SpecError::new(
            "constraints.jurisdiction",
            format!("{value:?} is not a two-letter country code like \"DE\""),
        ));
    }
    Ok(upper)
}

/// A non-negative decimal up to `max`, scaled by `scale` and rounded.
fn decimal(field: &str, value: f64, max: f64, scale: f64, what: &str) -> Result<u64, SpecError> {
    if !value.is_finite() || value < 0.0 {
        return Err(SpecError::new(
            field,
            format!("{value} is not {what} (finite, 0 or more)"),
        ));
    }
    if value > max {
        return Err(SpecError::new(
            field,
            format!("{value} is more than any GPU offers (at most {max})"),
        ));
    }
    // In range, so the product is at most 10^8 and the cast is exact.
    Ok((value * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_protocol::{Keypair, Signed};
    use std::path::Path;

    const SPEC: &str = r#"
name = "train"
command = ["python3", "train.py"]

[resources]
gpus = 2
gpu_model = "H100"
min_vram_gib = 80
min_tflops = 19.5
min_compute_capability = 8.6

[constraints]
region = "EU"
jurisdiction = "de"
energy = "renewable"
allow_simulated = true

[market]
max_price_per_gpu_hour = "2.5"
max_duration_secs = 600
bid_window_ms = 1500
"#;

    fn spec(text: &str) -> JobSpec {
        agora_client::spec::parse(text, Path::new("job.toml")).unwrap()
    }

    fn convert(text: &str) -> Result<Order, SpecError> {
        let key = Keypair::from_seed(&[7; 32]);
        order_from_spec(&spec(text), &key.public(), [3; 16], Timestamp(1_000_000))
    }

    #[test]
    fn a_job_the_provider_would_refuse_is_refused_at_submission_with_its_key() {
        use agora_client::api::InputSpec;
        let key = Keypair::from_seed(&[7; 32]);
        let submit = |edit: &dyn Fn(&mut JobSpec)| {
            let mut s = spec(SPEC);
            edit(&mut s);
            order_from_spec(&s, &key.public(), [3; 16], Timestamp(1_000_000))
                .and_then(|_| check_job(&s))
                .map_err(|e| (e.field, e.reason))
        };
        let field = |edit: &dyn Fn(&mut JobSpec)| submit(edit).unwrap_err().0;
        assert_eq!(submit(&|_| {}), Ok(()));
        assert_eq!(
            field(&|s| s.command = vec!["x".into(); MAX_ARGS_TEST + 1]),
            "command"
        );
        assert_eq!(field(&|s| s.command = vec!["a".repeat(5000)]), "command");
        assert_eq!(
            field(&|s| {
                s.env.insert("A=B".into(), "1".into());
            }),
            "env"
        );
        assert_eq!(
            field(&|s| {
                s.env.insert("OK".into(), "v".repeat(40 * 1024));
            }),
            "env"
        );
        assert_eq!(
            field(&|s| {
                for i in 0..300 {
                    s.env.insert(format!("V{i}"), "1".into());
                }
            }),
            "env"
        );
        for path in ["/etc/passwd", "", "a/../b", "./x", "a//b"] {
            let err = submit(&|s| {
                s.inputs = vec![InputSpec {
                    path: path.into(),
                    data_b64: Some(String::new()),
                }]
            })
            .unwrap_err();
            assert_eq!(err.0, "inputs", "{path:?}: {err:?}");
        }
        let err = submit(&|s| {
            s.inputs = vec![InputSpec {
                path: "data.bin".into(),
                data_b64: Some("not base64!".into()),
            }]
        })
        .unwrap_err();
        assert_eq!(err.0, "inputs[0].data_b64", "{err:?}");
        assert!(err.1.contains("data.bin"), "{err:?}");
        assert_eq!(
            field(&|s| {
                s.inputs = (0..65)
                    .map(|i| InputSpec {
                        path: format!("f{i}"),
                        data_b64: Some(String::new()),
                    })
                    .collect()
            }),
            "inputs"
        );
        // What passes here decodes on the provider as the same job.
        let ok = spec(SPEC);
        let payload = payload_of(&ok, LeaseId([1; 32])).unwrap();
        let decoded = JobPayload::from_proto(payload.to_proto()).unwrap();
        assert_eq!(decoded, payload);
    }

    const MAX_ARGS_TEST: usize = agora_protocol::job::MAX_ARGS;

    #[test]
    fn converts_units_and_passes_the_protocols_validation() {
        let key = Keypair::from_seed(&[7; 32]);
        let order =
            order_from_spec(&spec(SPEC), &key.public(), [3; 16], Timestamp(1_000_000)).unwrap();
        assert_eq!(order.gpu_count, 2);
        assert_eq!(order.gpu_model.as_deref(), Some("H100"));
        assert_eq!(order.min_vram_mib, 80 * 1024);
        assert_eq!(order.min_fp32_mtflops, 19_500);
        assert_eq!(order.min_compute_capability, 86);
        assert_eq!(order.jurisdiction.as_deref(), Some("DE"));
        assert_eq!(order.energy, Energy::Renewable);
        assert_eq!(order.max_price_per_gpu_hour, Amount(2_500_000));
        assert_eq!(order.expires_at, Timestamp(1_000_000 + 1_500 + 30_000));
        assert!(order.allow_simulated && !order.require_verified);

        let signed = Signed::sign(order.clone(), &key).unwrap();
        let back = Signed::<Order>::decode(&signed.encode()).unwrap();
        assert_eq!(back.message(), &order);
    }

    #[test]
    fn absent_constraints_mean_any() {
        let minimal = r#"
command = ["true"]
[resources]
gpus = 1
[market]
max_price_per_gpu_hour = "1"
max_duration_secs = 60
"#;
        let order = convert(minimal).unwrap();
        assert_eq!(order.energy, Energy::Unknown);
        assert_eq!(
            (&order.gpu_model, &order.region, &order.jurisdiction),
            (&None, &None, &None)
        );
        assert_eq!(order.bid_window_ms, 2000);
        assert_eq!(order.runtime, "process");
        let key = Keypair::from_seed(&[7; 32]);
        Signed::<Order>::decode(&Signed::sign(order, &key).unwrap().encode()).unwrap();
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let cases = [
            ("gpus = 2", "gpus = 0", "resources.gpus"),
            ("gpus = 2", "gpus = 5000", "resources.gpus"),
            (
                "gpu_model = \"H100\"",
                "gpu_model = \"RTX 4090\"",
                "resources.gpu_model",
            ),
            (
                "gpu_model = \"H100\"",
                "gpu_model = \"\"",
                "resources.gpu_model",
            ),
            (
                "min_vram_gib = 80",
                "min_vram_gib = 99999",
                "resources.min_vram_gib",
            ),
            (
                "min_tflops = 19.5",
                "min_tflops = -1.0",
                "resources.min_tflops",
            ),
            (
                "min_tflops = 19.5",
                "min_tflops = nan",
                "resources.min_tflops",
            ),
            (
                "min_tflops = 19.5",
                "min_tflops = inf",
                "resources.min_tflops",
            ),
            (
                "min_tflops = 19.5",
                "min_tflops = 1e9",
                "resources.min_tflops",
            ),
            (
                "min_compute_capability = 8.6",
                "min_compute_capability = 8.65",
                "resources.min_compute_capability",
            ),
            (
                "min_compute_capability = 8.6",
                "min_compute_capability = 90.0",
                "resources.min_compute_capability",
            ),
            ("region = \"EU\"", "region = \"E U\"", "constraints.region"),
            (
                "jurisdiction = \"de\"",
                "jurisdiction = \"Germany\"",
                "constraints.jurisdiction",
            ),
            (
                "max_price_per_gpu_hour = \"2.5\"",
                "max_price_per_gpu_hour = \"0\"",
                "market.max_price_per_gpu_hour",
            ),
            (
                "max_price_per_gpu_hour = \"2.5\"",
                "max_price_per_gpu_hour = \"two\"",
                "market.max_price_per_gpu_hour",
            ),
            (
                "max_duration_secs = 600",
                "max_duration_secs = 0",
                "market.max_duration_secs",
            ),
            (
                "max_duration_secs = 600",
                "max_duration_secs = 2592001",
                "market.max_duration_secs",
            ),
            (
                "bid_window_ms = 1500",
                "bid_window_ms = 0",
                "market.bid_window_ms",
            ),
            (
                "bid_window_ms = 1500",
                "bid_window_ms = 60001",
                "market.bid_window_ms",
            ),
            ("name = \"train\"", "runtime = \"\"", "runtime"),
            ("name = \"train\"", "runtime = \"a/b\"", "runtime"),
        ];
        for (from, to, field) in cases {
            assert!(SPEC.contains(from), "{from}");
            let err = convert(&SPEC.replace(from, to)).unwrap_err();
            assert_eq!(err.field, field, "{to}: {err}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn a_model_with_spaces_is_told_how_offers_spell_it() {
        let err = convert(&SPEC.replace("\"H100\"", "\"NVIDIA H100 80GB HBM3\"")).unwrap_err();
        assert!(err.reason.contains("H100-80GB-HBM3"), "{err}");
    }
}
