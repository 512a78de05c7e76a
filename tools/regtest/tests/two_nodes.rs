//! Two real nodes: connect, pay from one wallet to the other, replace the payment by fee bump,
//! mine it, and both agree on the tip.

use nodescope_regtest::{wait_until, Node, NodeConfig, DEFAULT_WALLET, TIMEOUT};

#[test]
fn pay_bump_mine_and_sync_between_two_nodes() {
    let alice = Node::start(NodeConfig::new().wallet(true)).expect("start alice");
    let bob = Node::start(NodeConfig::new().wallet(true)).expect("start bob");
    alice.connect_to(&bob).expect("connect");
    let alice_sees_bob = alice
        .peer_info(bob.p2p_addr())
        .unwrap()
        .expect("bob in getpeerinfo");
    assert_eq!(alice_sees_bob["connection_type"], "manual");
    assert_eq!(alice_sees_bob["transport_protocol_type"], "v2");

    alice.mature_coins().unwrap();
    alice.mature_coins().unwrap(); // once only
    assert_eq!(alice.block_count().unwrap(), 101);
    assert!(alice.balance().unwrap() >= 50.0);

    let to_bob = bob.new_address().unwrap();
    let txid = alice.send_to_address(&to_bob, 1.5).unwrap();
    alice.wait_for_mempool(&txid).unwrap();
    bob.wait_for_mempool(&txid).unwrap();

    let replacement = alice.bump_fee(&txid).unwrap();
    assert_ne!(replacement, txid);
    for node in [&alice, &bob] {
        node.wait_for_mempool(&replacement).unwrap();
        wait_until("the replaced tx to leave the mempool", TIMEOUT, || {
            Ok((!node.in_mempool(&txid)?).then_some(()))
        })
        .unwrap();
    }

    let mined = alice.generate(1).unwrap();
    assert_eq!(mined.len(), 1);
    let tip = Node::sync_blocks(&[&alice, &bob]).unwrap();
    assert_eq!(tip, mined[0]);
    assert_eq!(bob.block_count().unwrap(), 102);
    assert!(!bob.in_mempool(&replacement).unwrap());
    let received = bob
        .rpc_wallet(
            DEFAULT_WALLET,
            "getreceivedbyaddress",
            serde_json::json!([to_bob, 1]),
        )
        .unwrap();
    assert_eq!(received.as_f64(), Some(1.5));

    bob.disconnect_all().unwrap();
    wait_until("alice to see bob leave", TIMEOUT, || {
        Ok(alice.peers()?.is_empty().then_some(()))
    })
    .unwrap();
}
