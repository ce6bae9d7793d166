use std::os::unix::fs::PermissionsExt as _;

use super::*;

const PROVIDER: &str = r#"
[provider]
region = "EU"

[provider.pricing]
default = "2.0"
floor = "1.2"

[[simulated_gpu]]
model = "H100"
vram_gib = 80
tflops = 67.0
"#;

fn config(text: &str) -> Config {
    Config::parse(text, "test.toml").unwrap()
}

#[test]
fn a_key_file_others_can_read_is_an_error_naming_chmod() {
    let dir = tempfile::tempdir().unwrap();
    let path = identity::key_path(dir.path());
    assert_eq!(
        check_key_file(&path).severity,
        Severity::Ok,
        "absent is fine"
    );
    identity::load_or_create(dir.path()).unwrap();
    assert_eq!(check_key_file(&path).severity, Severity::Ok);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = check_key_file(&path);
    assert_eq!(check.severity, Severity::Error);
    assert!(check.found.contains("0644"), "{check:?}");
    assert_eq!(check.fix, Some(format!("chmod 600 {}", path.display())));
}

#[test]
fn a_port_already_bound_is_an_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let check = check_api(addr);
    assert_eq!(check.severity, Severity::Error);
    assert!(check.found.contains(&addr.to_string()), "{check:?}");
    assert!(check.fix.unwrap().contains(&addr.port().to_string()));

    let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", addr.port())
        .parse()
        .unwrap();
    let check = check_listen(&listen);
    assert_eq!(check.severity, Severity::Error);
    assert!(check.found.contains(&addr.port().to_string()), "{check:?}");
    drop(taken);

    let any: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    assert_eq!(check_listen(&any).severity, Severity::Ok);
    let quic: Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap();
    assert_eq!(check_listen(&quic).severity, Severity::Ok);
    assert_eq!(
        check_api("127.0.0.1:0".parse().unwrap()).severity,
        Severity::Ok
    );
}

#[tokio::test]
async fn an_unreachable_ledger_is_an_error() {
    let (ledger, clock) = check_ledger(Some("http://127.0.0.1:1")).await;
    assert_eq!(ledger.severity, Severity::Error, "{ledger:?}");
    assert!(ledger.found.contains("127.0.0.1:1"), "{ledger:?}");
    assert_eq!(clock.severity, Severity::Warning);
    let (ledger, _) = check_ledger(None).await;
    assert_eq!(ledger.severity, Severity::Error);
    assert!(ledger.fix.unwrap().contains("--ledger"));
}

#[tokio::test]
async fn an_unreachable_evm_ledger_is_an_error_and_creates_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut evm = agora_contracts_evm::EvmConfig::new(
        "http://127.0.0.1:1",
        "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            .parse()
            .unwrap(),
    );
    evm.rpc_retry_secs = 0;
    let checks = check_evm_ledger(&evm, dir.path()).await;
    assert_eq!(checks[0].check, "ledger");
    assert_eq!(checks[0].severity, Severity::Error, "{checks:?}");
    assert!(checks[0].found.contains("127.0.0.1:1"), "{checks:?}");
    assert_eq!(
        checks[1].severity,
        Severity::Warning,
        "clock unmeasured: {checks:?}"
    );
    assert!(
        !dir.path().join("evm.key").exists(),
        "doctor changes nothing"
    );
    // A setting out of range names its key before anything is asked.
    evm.confirmations = 0;
    let checks = check_evm_ledger(&evm, dir.path()).await;
    assert!(checks[0].found.contains("confirmations"), "{checks:?}");
}

#[test]
fn skew_thresholds() {
    let at = |ms| check_skew(Timestamp(100_000 + ms), Timestamp(100_000)).severity;
    assert_eq!(at(0), Severity::Ok);
    assert_eq!(at(SKEW_WARN_MS), Severity::Ok);
    assert_eq!(at(SKEW_WARN_MS + 1), Severity::Warning);
    assert_eq!(at(SKEW_ERROR_MS + 1), Severity::Error);
    let behind = check_skew(Timestamp(0), Timestamp(SKEW_ERROR_MS + 1));
    assert_eq!(behind.severity, Severity::Error);
    assert!(behind.found.contains("behind"), "{behind:?}");
}

#[test]
fn a_config_with_an_unknown_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agorad.toml");
    std::fs::write(&file, PROVIDER.replace("floor", "flor")).unwrap();
    let (check, config) = check_config(dir.path(), None);
    assert_eq!(check.severity, Severity::Error);
    assert!(check.found.contains("flor"), "{check:?}");
    assert!(config.is_none());

    std::fs::write(&file, PROVIDER).unwrap();
    let (check, config) = check_config(dir.path(), Some(&file));
    assert_eq!(check.severity, Severity::Ok, "{check:?}");
    assert!(config.is_some());

    // A model's price below the floor, as the bidder refuses it.
    let cheap = PROVIDER.replace(
        "floor = \"1.2\"",
        "floor = \"1.2\"\nmodels = { H100 = \"1.0\" }",
    );
    std::fs::write(&file, cheap).unwrap();
    let (check, _) = check_config(dir.path(), None);
    assert_eq!(check.severity, Severity::Error);
    assert!(
        check.found.contains("provider.pricing.models.H100"),
        "{check:?}"
    );

    // No file at all: a requester with defaults.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(check_config(empty.path(), None).0.severity, Severity::Ok);
}

#[test]
fn gpus_are_judged_by_role() {
    let none = Inventory {
        nvml_unavailable: Some("no NVIDIA driver found".into()),
        ..Inventory::default()
    };
    let provider = config(PROVIDER);
    assert_eq!(check_gpus(&provider, &none).severity, Severity::Warning);
    let bare = Config {
        simulated_gpu: Vec::new(),
        ..provider.clone()
    };
    let check = check_gpus(&bare, &none);
    assert_eq!(check.severity, Severity::Error);
    assert!(check.fix.unwrap().contains("simulated_gpu"));
    assert_eq!(check_gpus(&Config::default(), &none).severity, Severity::Ok);
    // Real GPUs beside [[simulated_gpu]]: the provider offers the
    // simulated ones, and doctor says so.
    let real = Inventory {
        gpus: crate::provider::inventory::simulated(
            &provider.simulated_gpu,
            agora_protocol::Timestamp(0),
        ),
        driver: Some("570.1".into()),
        nvml_unavailable: None,
    };
    let check = check_gpus(&provider, &real);
    assert_eq!(check.severity, Severity::Warning);
    assert!(check.fix.unwrap().contains("remove [[simulated_gpu]]"));
    assert_eq!(check_gpus(&bare, &real).severity, Severity::Ok);
}

#[test]
fn the_sandbox_is_needed_by_process_providers_only() {
    assert_eq!(check_sandbox(&Config::default()).severity, Severity::Ok);
    let mut missing = config(PROVIDER);
    missing.runtime.bwrap = Some("/nonexistent/bwrap".into());
    let check = check_sandbox(&missing);
    assert_eq!(check.severity, Severity::Error);
    assert!(check.found.contains("/nonexistent/bwrap"), "{check:?}");
    missing.runtime.allow_unsandboxed = true;
    assert_eq!(check_sandbox(&missing).severity, Severity::Warning);
}

#[test]
fn the_data_dir_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(check_data_dir(dir.path()).severity, Severity::Ok);
    assert_eq!(
        check_data_dir(&dir.path().join("new/deeper")).severity,
        Severity::Ok
    );
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert_eq!(check_data_dir(&file).severity, Severity::Error);
    // Free space is whatever it is here; the check reads it.
    let disk = check_disk(&dir.path().join("results"), 0);
    assert_ne!(disk.severity, Severity::Error);
    assert!(disk.found.contains("GiB free"), "{disk:?}");
    // Below the node's own floor: it would take no new work, and says so.
    let full = check_disk(&dir.path().join("results"), 1 << 30);
    assert_eq!(full.severity, Severity::Warning);
    assert!(full.found.contains("min_free_disk_mib"), "{full:?}");
}

#[test]
fn the_exit_status_is_one_exactly_when_something_is_an_error() {
    let ok = Check::ok("a", "fine");
    let warn = Check::warning("b", "meh", "do this");
    let err = Check::error("c", "bad", "do that");
    assert_eq!(exit_status(&[]), 0);
    assert_eq!(exit_status(&[ok.clone(), warn.clone()]), 0);
    assert_eq!(exit_status(&[ok, warn, err]), 1);
}

#[test]
fn human_output_is_one_aligned_line_per_check_and_json_has_the_fields() {
    let checks = [
        Check::ok("api", "127.0.0.1:0 is free"),
        Check::error("key file", "mode 0644", "chmod 600 k"),
    ];
    let text = render(&checks);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("ok     "), "{text}");
    assert!(lines[1].starts_with("error  "), "{text}");
    assert_eq!(lines[0].find("127.0.0.1"), lines[1].find("mode 0644"));
    assert!(lines[1].ends_with("fix: chmod 600 k"), "{text}");
    let json: serde_json::Value = serde_json::to_value(&checks).unwrap();
    assert_eq!(json[1]["severity"], "error");
    assert_eq!(json[1]["check"], "key file");
    assert_eq!(json[0]["fix"], serde_json::Value::Null);
}
