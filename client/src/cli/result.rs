//! `agora job result`: download a job's outputs and verify each file
//! against the manifest. The node's answers are untrusted: paths must stay
//! inside the target directory, sizes and hashes must match.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use reqwest::StatusCode;

use super::render;
use agora_client::api::{JobState, JobView, OutputView, ResultView};
use agora_client::http::NodeClient;

/// One verified file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Fetched {
    /// Path as in the manifest.
    pub(crate) path: String,
    /// Where it was written.
    pub(crate) file: PathBuf,
    /// Bytes.
    pub(crate) size: u64,
    /// blake3, hex.
    pub(crate) blake3: String,
}

/// Downloads and verifies every output of job `id` into `dir`.
pub(crate) async fn download(
    node: &NodeClient,
    id: &str,
    dir: &Path,
) -> anyhow::Result<(ResultView, Vec<Fetched>)> {
    let view = match node.result(id).await {
        Ok(view) => view,
        Err(e) if e.status() == Some(StatusCode::CONFLICT) => {
            let job = node.job(id).await?;
            bail!("{} ({e})", not_ready(&job));
        }
        Err(e) => return Err(e).with_context(|| format!("reading the result of job {id}")),
    };
    if !view.complete {
        let job = node.job(id).await?;
        bail!(not_ready(&job));
    }
    // Check the whole manifest before writing anything.
    let mut plan = Vec::with_capacity(view.outputs.len());
    for output in &view.outputs {
        let relative = safe_relative(&output.path)
            .map_err(|why| anyhow::anyhow!("refusing output '{}': {why}", output.path))?;
        let hash = blake3::Hash::from_hex(&output.blake3).map_err(|e| {
            anyhow::anyhow!(
                "refusing output '{}': its hash '{}' is not blake3 hex ({e})",
                output.path,
                output.blake3
            )
        })?;
        if plan
            .iter()
            .any(|(p, _, _): &(PathBuf, _, _)| *p == relative)
        {
            bail!("refusing output '{}': listed twice", output.path);
        }
        plan.push((relative, hash, output));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut fetched = Vec::with_capacity(plan.len());
    for (relative, hash, output) in plan {
        fetched.push(fetch_one(node, id, dir, &relative, hash, output).await?);
    }
    Ok((view, fetched))
}

async fn fetch_one(
    node: &NodeClient,
    id: &str,
    dir: &Path,
    relative: &Path,
    want: blake3::Hash,
    output: &OutputView,
) -> anyhow::Result<Fetched> {
    let file = dir.join(relative);
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let outcome = node
        .download_result_file(id, &output.path, &file, output.size)
        .await;
    let problem = match outcome {
        Err(e) => Some(format!("downloading it failed: {e}")),
        Ok((size, _)) if size != output.size => Some(format!(
            "{size} bytes arrived, the manifest lists {}",
            output.size
        )),
        Ok((_, got)) if got != want => Some(format!(
            "its blake3 is {}, the manifest lists {}",
            got.to_hex(),
            output.blake3
        )),
        Ok(_) => None,
    };
    if let Some(problem) = problem {
        // Best effort: the file may not even exist.
        let _ = std::fs::remove_file(&file);
        bail!(
            "output '{}' failed verification: {problem}; the file was removed",
            output.path
        );
    }
    Ok(Fetched {
        path: output.path.clone(),
        file,
        size: output.size,
        blake3: want.to_hex().to_string(),
    })
}

/// Why a job's results cannot be downloaded yet (or ever).
fn not_ready(job: &JobView) -> String {
    if !job.state.has_stopped() {
        format!(
            "job {} is still {}; its results can be downloaded once it ends",
            job.id,
            render::state(job.state)
        )
    } else if job.state.is_terminal() && job.outputs.is_empty() {
        match job.state {
            JobState::NoBids => format!("job {} never ran (no bids)", job.id),
            _ => format!("job {} had no outputs", job.id),
        }
    } else {
        format!(
            "the results of job {} are not fetched from its provider yet; try again shortly",
            job.id
        )
    }
}

/// A manifest path as a relative path that stays inside the target
/// directory: `/`-separated normal names, no `..`, `.`, empty parts, root,
/// drive prefix, backslash or NUL.
pub(crate) fn safe_relative(path: &str) -> Result<PathBuf, &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.contains('\0') || path.contains('\\') {
        return Err("a NUL or backslash in the path");
    }
    if path.starts_with('/') {
        return Err("an absolute path");
    }
    let mut out = PathBuf::new();
    for part in path.split('/') {
        match part {
            "" | "." => return Err("an empty or '.' path component"),
            ".." => return Err("a '..' path component"),
            _ => {}
        }
        let mut components = Path::new(part).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(name)), None) => out.push(name),
            _ => return Err("a path component that is not a plain name"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        assert_eq!(
            safe_relative("out/model.bin").unwrap(),
            PathBuf::from("out").join("model.bin")
        );
        assert_eq!(safe_relative("a").unwrap(), PathBuf::from("a"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "..",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad:?} passed");
        }
    }
}
