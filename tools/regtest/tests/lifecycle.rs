//! Process lifecycle: restart keeps the chain, Drop cleans up even on panic, ZMQ and listen
//! options reach bitcoind.

use std::path::{Path, PathBuf};

use nodescope_regtest::{wait_until, Error, Node, NodeConfig, TIMEOUT};
use serde_json::json;

#[test]
fn restart_changes_pid_and_keeps_the_chain_and_wallet() {
    let mut node = Node::start(NodeConfig::new().wallet(true)).unwrap();
    node.generate(5).unwrap();
    let (pid, tip) = (node.pid(), node.best_block_hash().unwrap());
    let p2p = node.p2p_addr();

    node.restart().unwrap();
    assert_ne!(node.pid(), pid);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(node.p2p_addr(), p2p);
    assert_eq!(node.block_count().unwrap(), 5);
    assert_eq!(node.best_block_hash().unwrap(), tip);
    node.new_address().unwrap(); // the wallet is loaded again

    node.stop().unwrap();
    assert!(matches!(
        node.rpc("getblockcount", json!([])),
        Err(Error::NotRunning)
    ));
    node.restart().unwrap();
    assert_eq!(node.block_count().unwrap(), 5);

    let pid = node.pid();
    node.kill().unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    node.restart().unwrap();
    node.rpc("getblockchaininfo", json!([])).unwrap();
}

#[test]
fn drop_on_panic_stops_bitcoind_and_removes_the_datadir() {
    let (tx, rx) = std::sync::mpsc::channel::<(u32, PathBuf)>();
    let result = std::panic::catch_unwind(move || {
        let node = Node::start(NodeConfig::new()).unwrap();
        tx.send((node.pid(), node.datadir().to_path_buf())).unwrap();
        panic!("a test failing while its node runs");
    });
    assert!(result.is_err());
    let (pid, datadir) = rx.recv().unwrap();
    wait_until("bitcoind to be gone", TIMEOUT, || {
        Ok((!Path::new(&format!("/proc/{pid}")).exists()).then_some(()))
    })
    .unwrap();
    assert!(!datadir.exists(), "{} still exists", datadir.display());
}

#[test]
fn zmq_and_no_listen_reach_bitcoind() {
    let node = Node::start(NodeConfig::new().zmq(true).listen(false)).unwrap();
    let zmq = node.zmq().expect("zmq endpoints").clone();
    let notifications = node.rpc("getzmqnotifications", json!([])).unwrap();
    let mut got: Vec<(String, String)> = notifications
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["type"].as_str().unwrap().into(),
                n["address"].as_str().unwrap().into(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        ("pubhashblock".to_string(), zmq.hashblock),
        ("pubhashtx".to_string(), zmq.hashtx),
        ("pubrawblock".to_string(), zmq.rawblock),
        ("pubsequence".to_string(), zmq.sequence),
    ];
    want.sort();
    assert_eq!(got, want);
    let info = node.rpc("getnetworkinfo", json!([])).unwrap();
    assert_eq!(info["localrelay"], true);
    assert!(
        std::net::TcpStream::connect(node.p2p_addr()).is_err(),
        "nothing should listen"
    );
    assert_eq!(node.chain(), "regtest");
    assert!(node.bitcoind_path().ends_with("bitcoind"));
}

#[test]
fn generate_without_wallet_mines_to_the_burn_address() {
    let node = Node::start(NodeConfig::new()).unwrap();
    let valid = node
        .rpc("validateaddress", json!([nodescope_regtest::BURN_ADDRESS]))
        .unwrap();
    assert_eq!(valid["isvalid"], true);
    assert_eq!(node.generate(3).unwrap().len(), 3);
    assert!(matches!(node.new_address(), Err(Error::NoWallet { .. })));
    let err = node.rpc("nosuchmethod", json!([])).unwrap_err();
    assert_eq!(err.rpc_code(), Some(-32601), "{err}");
}

#[test]
fn early_exit_reports_stderr_and_debug_log() {
    let started = std::time::Instant::now();
    let err = Node::start(NodeConfig::new().arg("-nosuchoption=1")).unwrap_err();
    assert!(matches!(err, Error::EarlyExit(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains("nosuchoption"), "{message}");
    assert!(message.contains("debug.log"), "{message}");
    // Noticed when the process exits, not at the start-up deadline.
    assert!(started.elapsed() < TIMEOUT / 2);
}

#[test]
fn a_port_clash_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = Node::start(NodeConfig::new().arg(format!("-bind=127.0.0.1:{port}"))).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("Unable to bind to 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn a_private_bitcoind_copy_can_be_run_and_cli_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("bitcoind");
    std::fs::copy(
        nodescope_regtest::bin_dir().unwrap().join("bitcoind"),
        &copy,
    )
    .unwrap();
    let node = Node::start(NodeConfig::new().bitcoind(&copy)).unwrap();
    assert_eq!(node.bitcoind_path(), copy);
    let exe = std::fs::read_link(format!("/proc/{}/exe", node.pid())).unwrap();
    assert_eq!(exe, copy);
    node.generate(2).unwrap();
    let out = node.cli().arg("getblockcount").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}
