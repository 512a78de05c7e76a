//! Bitcoin's subsidy schedule: the most coins a chain can have made by a height, for the
//! inflation check (a UTXO set holding more than this is money from nowhere).

/// Satoshis in a bitcoin.
pub const COIN: u64 = 100_000_000;

/// The first blocks' subsidy: 50 BTC.
const INITIAL_SUBSIDY: u64 = 50 * COIN;

/// Blocks between halvings on a chain as Bitcoin Core names it (`nSubsidyHalvingInterval`):
/// 210,000 on main, test, testnet4 and signet, 150 on regtest; `None` for a chain it does not
/// know.
pub fn halving_interval(chain: &str) -> Option<u64> {
    match chain {
        "main" | "test" | "testnet4" | "signet" => Some(210_000),
        "regtest" => Some(150),
        _ => None,
    }
}

/// The subsidy of the block at `height`, as Core's `GetBlockSubsidy`: 50 BTC shifted right
/// once per halving, 0 from the 64th.
pub fn block_subsidy(height: u64, interval: u64) -> u64 {
    let halvings = height / interval;
    if halvings >= 64 {
        return 0;
    }
    INITIAL_SUBSIDY >> halvings
}

/// The sum of the subsidies of blocks 0 to `height` (the genesis block's included, though its
/// output cannot be spent), in satoshis: the most coins the schedule allows at that height.
pub fn supply_limit(height: u64, interval: u64) -> u64 {
    let blocks = height.saturating_add(1);
    let mut total = 0u64;
    for halvings in 0..64 {
        let start = halvings * interval;
        if start >= blocks {
            break;
        }
        let in_era = (blocks - start).min(interval);
        total += in_era * (INITIAL_SUBSIDY >> halvings);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regtest_halves_every_150_blocks() {
        let regtest = halving_interval("regtest").unwrap();
        assert_eq!(supply_limit(0, regtest), 50 * COIN);
        assert_eq!(supply_limit(149, regtest), 7500 * COIN);
        assert_eq!(supply_limit(150, regtest), 7525 * COIN);
        // 200 blocks mined on top of the genesis block.
        assert_eq!(supply_limit(200, regtest), 150 * 50 * COIN + 51 * 25 * COIN);
        assert_eq!(block_subsidy(299, regtest), 25 * COIN);
        assert_eq!(block_subsidy(300, regtest), 25 * COIN / 2);
    }

    #[test]
    fn main_halves_every_210_000_blocks_and_never_reaches_21_million() {
        let main = halving_interval("main").unwrap();
        assert_eq!(supply_limit(209_999, main), 210_000 * 50 * COIN);
        assert_eq!(supply_limit(210_000, main), 210_000 * 50 * COIN + 25 * COIN);
        assert_eq!(block_subsidy(209_999, main), 50 * COIN);
        assert_eq!(block_subsidy(210_000, main), 25 * COIN);
        assert_eq!(block_subsidy(840_000, main), 312_500_000);
        // Integer shifts round each era down: the famous 20,999,999.9769 BTC.
        let all = supply_limit(u64::MAX, main);
        assert_eq!(all, 2_099_999_997_690_000);
        assert!(all <= 21_000_000 * COIN);
        assert_eq!(block_subsidy(64 * 210_000, main), 0);
        for chain in ["test", "testnet4", "signet"] {
            assert_eq!(halving_interval(chain), Some(main), "{chain}");
        }
        assert_eq!(halving_interval("litecoin"), None);
        assert!(supply_limit(u64::MAX, 150) <= 21_000_000 * COIN);
    }

    #[test]
    fn the_limit_is_the_sum_of_the_block_subsidies() {
        let mut sum = 0;
        for height in 0..2000 {
            sum += block_subsidy(height, 150);
            assert_eq!(supply_limit(height, 150), sum, "height {height}");
        }
    }
}
