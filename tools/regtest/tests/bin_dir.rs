//! `bin_dir` honours NODESCOPE_BITCOIND_BIN and says where it looked (a file of its own: it
//! changes the environment of the test process).

use nodescope_regtest::{bin_dir, Error, BIN_ENV};

#[test]
fn bin_dir_reports_where_it_looked() {
    let found = bin_dir().expect("Bitcoin Core installed by `cargo xtask setup`");
    assert!(found.join("bitcoind").is_file());

    std::env::set_var(BIN_ENV, "/nonexistent/bitcoin/bin");
    let err = bin_dir().unwrap_err();
    std::env::set_var(BIN_ENV, &found);
    assert!(matches!(err, Error::BinNotFound { .. }));
    let message = err.to_string();
    assert!(message.contains("/nonexistent/bitcoin/bin"), "{message}");
    assert!(message.contains("cargo xtask setup"), "{message}");
    assert_eq!(bin_dir().unwrap(), found);
    std::env::remove_var(BIN_ENV);
}
