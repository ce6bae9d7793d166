//! Job execution against the fake node: following logs across a dropped
//! stream, downloading and verifying results, cancelling, `submit --watch`.

use agora_client::api::JobState;
use agora_client::http::{NodeClient, StreamItem};

use crate::cli::{agora, stderr, stdout, write_spec};
use crate::fake_node::{FakeNode, OUTPUTS, TOKEN};

const JOB_STDOUT: &str = "hello\nstep 1\nstep 2 ünïcode\ndone\n";

#[tokio::test]
async fn the_stream_resumes_after_a_drop_without_repeats_or_gaps() {
    let (node, url) = FakeNode::start().await;
    let client = NodeClient::new(&url, Some(TOKEN)).unwrap();
    let mut stream = client.stream_job("ok", 0);
    let mut seqs = Vec::new();
    let end = loop {
        match stream.next().await.unwrap() {
            Some(StreamItem::Entry(e)) => seqs.push(e.seq),
            Some(StreamItem::End(job)) => break job,
            None => panic!("no end event"),
        }
    };
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    assert_eq!(end.state, JobState::Succeeded);
    assert_eq!(end.exit_code, Some(0));
    assert!(stream.next().await.unwrap().is_none());
    assert_eq!(stream.reconnects(), 1);
    // The first connection dropped inside entry 5; the second asked after 4.
    assert_eq!(
        node.stream_requests(),
        [
            ("ok".to_string(), 0, Some("0".to_string())),
            ("ok".to_string(), 4, Some("4".to_string())),
        ]
    );
}

#[tokio::test]
async fn logs_follow_prints_each_stream_in_order_and_exits_0_on_success() {
    let (_node, url) = FakeNode::start().await;
    let out = agora(&url, &["--token", TOKEN, "job", "logs", "ok", "-f"]).await;
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, JOB_STDOUT);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        "leased to the provider",
        "started pid 42",
        "warming up",
        "receipt #1 5 GPU-s",
        "exited status 0",
        "settled 0.006667 AGR",
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.ends_with(want), "{line:?} should end with {want:?}");
    }
    // Events carry the node's time; no colours when stderr is not a TTY.
    assert!(lines[0].starts_with("[22:13:22.000] "), "{}", lines[0]);
    assert!(!stderr.contains('\x1b'), "{stderr}");
}

#[tokio::test]
async fn logs_follow_json_prints_every_entry_as_one_json_line_in_order() {
    let (_node, url) = FakeNode::start().await;
    let out = agora(
        &url,
        &["--token", TOKEN, "--json", "job", "logs", "ok", "-f"],
    )
    .await;
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let entries: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{stdout}"
    );
    // Output and events alike go to stdout as JSON; stderr stays empty.
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"stdout") && kinds.contains(&"event"),
        "{kinds:?}"
    );
    assert_eq!(stderr, "");
}

#[tokio::test]
async fn logs_follow_exits_1_saying_why_when_the_job_failed() {
    let (_node, url) = FakeNode::start().await;
    let out = agora(&url, &["--token", TOKEN, "job", "logs", "fail", "--follow"]).await;
    let stderr = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: bad input\n"), "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap(),
        "agora: job fail failed: exited with status 3"
    );
}

#[tokio::test]
async fn logs_without_follow_pages_through_what_exists() {
    let (_node, url) = FakeNode::start().await;
    let out = agora(&url, &["--token", TOKEN, "job", "logs", "ok"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), JOB_STDOUT);

    let out = agora(
        &url,
        &[
            "--token", TOKEN, "--json", "job", "logs", "ok", "--after", "2",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let seqs: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (3..=9).collect::<Vec<_>>());
}

#[tokio::test]
async fn result_downloads_and_verifies_every_file() {
    let (_node, url) = FakeNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("results");
    let out = agora(
        &url,
        &[
            "--token",
            TOKEN,
            "job",
            "result",
            "ok",
            "-o",
            target.to_str().unwrap(),
        ],
    )
    .await;
    let stdout = stdout(&out);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    for (path, bytes) in OUTPUTS {
        assert_eq!(std::fs::read(target.join(path)).unwrap(), bytes, "{path}");
        let hash = blake3::hash(bytes).to_hex().to_string();
        let row = stdout.lines().find(|l| l.contains(&hash)).unwrap();
        assert!(row.ends_with("verified"), "{row}");
    }
    assert!(stdout.contains("2 file(s) of job ok verified"), "{stdout}");
}

#[tokio::test]
async fn a_tampered_file_is_rejected_and_removed() {
    let (_node, url) = FakeNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = agora(
        &url,
        &[
            "--token",
            TOKEN,
            "job",
            "result",
            "tampered",
            "-o",
            dir.path().to_str().unwrap(),
        ],
    )
    .await;
    let stderr = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("output 'metrics.json' failed verification: its blake3 is"),
        "{stderr}"
    );
    assert!(stderr.contains("the file was removed"), "{stderr}");
    assert!(!dir.path().join("metrics.json").exists());
}

#[tokio::test]
async fn a_manifest_path_leaving_the_directory_is_refused_before_writing() {
    let (_node, url) = FakeNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("results");
    let out = agora(
        &url,
        &[
            "--token",
            TOKEN,
            "job",
            "result",
            "escape",
            "-o",
            target.to_str().unwrap(),
        ],
    )
    .await;
    let stderr = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing output '../evil': a '..' path component"),
        "{stderr}"
    );
    assert!(!target.exists() && !dir.path().join("evil").exists());
}

#[tokio::test]
async fn result_of_a_running_job_says_it_is_still_running() {
    let (_node, url) = FakeNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = agora(
        &url,
        &[
            "--token",
            TOKEN,
            "job",
            "result",
            "running",
            "-o",
            dir.path().to_str().unwrap(),
        ],
    )
    .await;
    let stderr = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("job running is still running"), "{stderr}");
}

#[tokio::test]
async fn cancel_prints_the_new_state_and_an_ended_job_cannot_be_cancelled() {
    let (node, url) = FakeNode::start().await;
    let out = agora(&url, &["--token", TOKEN, "job", "cancel", "running"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "job running: cancelled\n");
    assert_eq!(node.state("running"), Some(JobState::Cancelled));

    let out = agora(&url, &["--token", TOKEN, "job", "cancel", "ok"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already ended"), "{}", stderr(&out));
}

#[tokio::test]
async fn status_shows_the_run() {
    let (_node, url) = FakeNode::start().await;
    let out = agora(&url, &["--token", TOKEN, "job", "status", "fail"]).await;
    let stdout = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout.contains("exit code    3"), "{stdout}");
    assert!(
        stdout.contains("#3 12 GPU-s, 0.006667 AGR (final)"),
        "{stdout}"
    );
    assert!(stdout.contains("refunded     0.326667 AGR"), "{stdout}");
    assert!(stdout.contains("outputs, fetched (2)"), "{stdout}");
}

#[tokio::test]
async fn submit_watch_follows_the_job_and_ends_with_the_settlement() {
    let (_node, url) = FakeNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path());
    let out = agora(
        &url,
        &[
            "--token", TOKEN, "job", "submit", &spec, "--offer", "0ffe7", "--watch",
        ],
    )
    .await;
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.starts_with("job j1: leased to "), "{stderr}");
    assert!(stderr.contains("] exited status 0\n"), "{stderr}");
    let (output, summary) = stdout.split_at(JOB_STDOUT.len());
    assert_eq!(output, JOB_STDOUT);
    for want in [
        "state        succeeded",
        "exit code    0",
        "gpu-seconds  12",
        "amount       0.006667 AGR (receipt #3, final)",
        "settled      0.006667 AGR to ",
        "refunded     0.326667 AGR",
        "escrow       0.333334 AGR",
        "ledger ops   3",
    ] {
        assert!(summary.contains(want), "{want:?} missing:\n{summary}");
    }
}

#[tokio::test]
async fn submit_without_watch_returns_once_placed() {
    let (_node, url) = FakeNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path());
    let out = agora(
        &url,
        &["--token", TOKEN, "job", "submit", &spec, "--offer", "0ffe7"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("state      leased"),
        "{}",
        stdout(&out)
    );
}
