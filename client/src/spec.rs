//! Job spec files: TOML on disk, resolved into the [`JobSpec`] the API takes.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::api::JobSpec;

/// Largest input file the CLI will send with a spec.
pub const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// Why a spec file cannot be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The spec file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML for the schema; toml's message has line and column.
    #[error("{path}: {message}")]
    Parse {
        /// The spec file.
        path: PathBuf,
        /// What is wrong, where.
        message: String,
    },
    /// An input file is missing, unreadable or too large.
    #[error("{path}: inputs: {input}: {reason}")]
    Input {
        /// The spec file.
        path: PathBuf,
        /// The input as written.
        input: String,
        /// What is wrong.
        reason: String,
    },
}

/// Parses spec text; `origin` names it in errors. Inputs are not read.
pub fn parse(text: &str, origin: &Path) -> Result<JobSpec, SpecError> {
    toml::from_str(text).map_err(|e| SpecError::Parse {
        path: origin.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads a spec file and the input files it names (relative to the spec's
/// directory), embedding their contents.
pub fn load(path: &Path) -> Result<JobSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut spec = parse(&text, path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    for input in &mut spec.inputs {
        let fail = |reason: String| SpecError::Input {
            path: path.to_path_buf(),
            input: input.path.clone(),
            reason,
        };
        let relative = Path::new(&input.path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(fail(
                "must be a path inside the spec's directory (no leading / or ..)".into(),
            ));
        }
        let file = base.join(relative);
        let meta =
            std::fs::metadata(&file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
        if !meta.is_file() {
            return Err(fail(format!("{} is not a file", file.display())));
        }
        if meta.len() > MAX_INPUT_BYTES {
            return Err(fail(format!(
                "{} bytes; inputs sent with a spec are at most {MAX_INPUT_BYTES}",
                meta.len()
            )));
        }
        let bytes = std::fs::read(&file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
        input.data_b64 = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"
name = "train"
command = ["python3", "train.py"]
inputs = [{ path = "train.py" }]

[resources]
gpus = 1
gpu_model = "H100"
min_vram_gib = 80

[constraints]
region = "EU"
energy = "renewable"
allow_simulated = true

[market]
max_price_per_gpu_hour = "2.5"
max_duration_secs = 600
bid_window_ms = 1500
"#;

    #[test]
    fn loads_the_example_with_its_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.py"), b"print('hi')").unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let spec = load(&path).unwrap();
        assert_eq!(spec.resources.gpus, 1);
        assert_eq!(spec.runtime, "process");
        assert_eq!(
            spec.inputs[0].data_b64.as_deref(),
            Some(
                base64::engine::general_purpose::STANDARD
                    .encode(b"print('hi')")
                    .as_str()
            )
        );
    }

    #[test]
    fn a_typo_names_the_file_and_the_key() {
        let err = parse(
            &EXAMPLE.replace("gpus = 1", "gpu = 1"),
            Path::new("job.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("job.toml"), "{err}");
        assert!(err.contains("gpu"), "{err}");
    }

    #[test]
    fn inputs_outside_the_spec_dir_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(&path, EXAMPLE.replace("train.py\" }", "../etc/passwd\" }")).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("inside the spec's directory"), "{err}");
    }
}
