//! The job a requester sends once its lease exists, and job control.

use agora_proto::v1 as pb;

use crate::envelope::Kind;
use crate::identity::PublicKey;
use crate::lease::LeaseId;
use crate::message::{ValidationError, WireMessage, digest, label, text};
use crate::time::Timestamp;

/// Most arguments in a command.
pub const MAX_ARGS: usize = 256;
/// Most environment variables.
pub const MAX_ENV: usize = 256;
/// Most input files.
pub const MAX_INPUTS: usize = 64;

/// An input file shipped with the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Relative path inside the job's work dir; no `..`, not absolute.
    pub path: String,
    /// Contents.
    pub content: Vec<u8>,
    /// blake3 of `content`, checked on arrival.
    pub blake3: [u8; 32],
}

/// The job itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPayload {
    /// The lease it runs under.
    pub lease_id: LeaseId,
    /// Runtime ("process", "ray").
    pub runtime: String,
    /// argv.
    pub command: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Input files.
    pub inputs: Vec<InputFile>,
    /// Whether the job asks for network access.
    pub network: bool,
}

fn relative_path(value: String) -> Result<String, ValidationError> {
    let value = text("inputs.path", value, 256)?;
    let bad = value.is_empty()
        || value.starts_with('/')
        || value.contains('\\')
        || value
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(ValidationError::new(
            "inputs.path",
            format!("{value:?} is not a plain relative path"),
        ));
    }
    Ok(value)
}

fn env_name(name: String) -> Result<String, ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if ok {
        Ok(name)
    } else {
        Err(ValidationError::new(
            "env.name",
            format!("{name:?} is not a variable name"),
        ))
    }
}

impl WireMessage for JobPayload {
    const KIND: Kind = Kind::JobPayload;
    type Proto = pb::JobPayload;

    fn from_proto(p: pb::JobPayload) -> Result<Self, ValidationError> {
        if p.command.is_empty() || p.command.len() > MAX_ARGS {
            return Err(ValidationError::new(
                "command",
                format!("{} arguments; expected 1..={MAX_ARGS}", p.command.len()),
            ));
        }
        if p.env.len() > MAX_ENV {
            return Err(ValidationError::new(
                "env",
                format!("{} variables; at most {MAX_ENV}", p.env.len()),
            ));
        }
        if p.inputs.len() > MAX_INPUTS {
            return Err(ValidationError::new(
                "inputs",
                format!("{} files; at most {MAX_INPUTS}", p.inputs.len()),
            ));
        }
        let command = p
            .command
            .into_iter()
            .map(|a| text("command", a, 4096))
            .collect::<Result<Vec<_>, _>>()?;
        let env = p
            .env
            .into_iter()
            .map(|v| Ok((env_name(v.name)?, text("env.value", v.value, 32 * 1024)?)))
            .collect::<Result<Vec<_>, ValidationError>>()?;
        let mut inputs = Vec::with_capacity(p.inputs.len());
        for f in p.inputs {
            let path = relative_path(f.path)?;
            let hash = digest("inputs.blake3", &f.blake3)?;
            if *blake3::hash(&f.content).as_bytes() != hash {
                return Err(ValidationError::new(
                    "inputs.blake3",
                    format!("content of {path:?} does not match its hash"),
                ));
            }
            inputs.push(InputFile {
                path,
                content: f.content,
                blake3: hash,
            });
        }
        Ok(Self {
            lease_id: LeaseId(digest("lease_id", &p.lease_id)?),
            runtime: label("runtime", p.runtime, 16)?,
            command,
            env,
            inputs,
            network: p.network,
        })
    }

    fn to_proto(&self) -> pb::JobPayload {
        pb::JobPayload {
            lease_id: self.lease_id.0.to_vec(),
            runtime: self.runtime.clone(),
            command: self.command.clone(),
            env: self
                .env
                .iter()
                .map(|(name, value)| pb::EnvVar {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            inputs: self
                .inputs
                .iter()
                .map(|f| pb::InputFile {
                    path: f.path.clone(),
                    content: f.content.clone(),
                    blake3: f.blake3.to_vec(),
                })
                .collect(),
            network: self.network,
        }
    }

    /// Signed by the lease's requester, checked against the lease.
    fn signer(&self) -> Option<&PublicKey> {
        None
    }
}

/// What a requester may ask of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    /// Stop it; pay for the time used.
    Cancel,
}

/// A control message for a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobControl {
    /// The lease.
    pub lease_id: LeaseId,
    /// What to do.
    pub action: JobAction,
    /// Issued.
    pub issued_at: Timestamp,
}

impl WireMessage for JobControl {
    const KIND: Kind = Kind::JobControl;
    type Proto = pb::JobControl;

    fn from_proto(p: pb::JobControl) -> Result<Self, ValidationError> {
        let action = match pb::JobAction::try_from(p.action) {
            Ok(pb::JobAction::Cancel) => JobAction::Cancel,
            _ => {
                return Err(ValidationError::new(
                    "action",
                    format!("unknown action {}", p.action),
                ));
            }
        };
        Ok(Self {
            lease_id: LeaseId(digest("lease_id", &p.lease_id)?),
            action,
            issued_at: Timestamp(p.issued_at_ms),
        })
    }

    fn to_proto(&self) -> pb::JobControl {
        pb::JobControl {
            lease_id: self.lease_id.0.to_vec(),
            action: match self.action {
                JobAction::Cancel => pb::JobAction::Cancel,
            } as i32,
            issued_at_ms: self.issued_at.0,
        }
    }

    fn signer(&self) -> Option<&PublicKey> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> pb::JobPayload {
        let content = b"print(1)".to_vec();
        pb::JobPayload {
            lease_id: vec![1; 32],
            runtime: "process".into(),
            command: vec!["python3".into(), "main.py".into()],
            env: vec![pb::EnvVar {
                name: "SEED".into(),
                value: "7".into(),
            }],
            inputs: vec![pb::InputFile {
                path: "src/main.py".into(),
                blake3: blake3::hash(&content).as_bytes().to_vec(),
                content,
            }],
            network: false,
        }
    }

    #[test]
    fn payload_round_trips() {
        let job = JobPayload::from_proto(payload()).unwrap();
        assert_eq!(job.to_proto(), payload());
    }

    #[test]
    fn hostile_paths_names_and_hashes_are_refused() {
        for bad in ["/etc/passwd", "../key", "a/../../b", "a//b", "./x", ""] {
            let mut p = payload();
            p.inputs[0].path = bad.into();
            assert_eq!(
                JobPayload::from_proto(p).unwrap_err().field,
                "inputs.path",
                "{bad}"
            );
        }
        let mut p = payload();
        p.inputs[0].content.push(b'!');
        assert_eq!(
            JobPayload::from_proto(p).unwrap_err().field,
            "inputs.blake3"
        );
        let mut p = payload();
        p.env[0].name = "1BAD".into();
        assert_eq!(JobPayload::from_proto(p).unwrap_err().field, "env.name");
        let mut p = payload();
        p.command.clear();
        assert_eq!(JobPayload::from_proto(p).unwrap_err().field, "command");
    }
}
