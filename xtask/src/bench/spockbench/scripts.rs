//! The pgbench scripts of the three transaction profiles (spockbench.md
//! §4), written into the run directory. Every script runs pgbench's
//! tpcb-like statements in one transaction, in one global lock order
//! (account, teller, branch, history); the profiles differ only in where
//! the teller and the account come from: the home branch `h` or the remote
//! branch `r`.

use super::config::PROFILES;

/// The script of profile `index` (into `PROFILES`).
pub fn script(index: usize) -> String {
    let (teller_branch, account_branch) = match index {
        0 => ("h", "h"),
        1 => ("h", "r"),
        _ => ("r", "r"),
    };
    let mut s = format!(
        "-- spockbench profile {}: teller of {teller_branch}, account of {account_branch}, branch h\n",
        PROFILES[index]
    );
    // The home branch: uniform over the node's home set.
    s.push_str("\\set h :home_first + random(0, :home_count - 1) * :home_step\n");
    if index > 0 {
        // The remote branch: uniform over all branches (remote_mode 0), or
        // over the branches not homed here (1): the j-th of them, counting
        // blocks of home_step branches of which one is home.
        s.push_str(
            "\\if :remote_mode = 1\n\
             \\set j random(0, :nbranches - :home_count - 1)\n\
             \\set jpos :j % (:home_step - 1)\n\
             \\set r (:j / (:home_step - 1)) * :home_step + :jpos + 1 + case when :jpos >= :home_first - 1 then 1 else 0 end\n\
             \\else\n\
             \\set r random(1, :nbranches)\n\
             \\endif\n",
        );
    }
    s.push_str(&format!(
        "\\set tid 10 * (:{teller_branch} - 1) + random(1, 10)\n\
         \\set aid 100000 * (:{account_branch} - 1) + random(1, 100000)\n\
         \\set delta random(-5000, 5000)\n\
         \\set arandom random(0, 999)\n\
         \\set trandom random(0, 999)\n\
         BEGIN;\n\
         UPDATE pgbench_accounts SET abalance = abalance + :delta, arandom = :arandom, alastts = CURRENT_TIMESTAMP WHERE aid = :aid;\n\
         SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n\
         UPDATE pgbench_tellers SET tbalance = tbalance + :delta, trandom = :trandom, tlastts = CURRENT_TIMESTAMP WHERE tid = :tid;\n\
         UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :h;\n\
         INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :h, :aid, :delta, CURRENT_TIMESTAMP);\n\
         END;\n"
    ));
    s
}

/// The file name of profile `index`'s script.
pub fn file_name(index: usize) -> String {
    format!("{}.sql", PROFILES[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The remote draw of `remote_mode = 1`, evaluated as pgbench does.
    fn other(j: u32, first: u32, step: u32) -> u32 {
        let jpos = j % (step - 1);
        (j / (step - 1)) * step + jpos + 1 + u32::from(jpos + 1 >= first)
    }

    #[test]
    fn the_other_draw_hits_exactly_the_branches_not_homed_here() {
        use super::super::config::home_set;
        for s in 2..14 {
            for n in 2..6 {
                for k in 1..=n {
                    let (first, step, count) = home_set(k, n, s);
                    let home: Vec<u32> = (0..count).map(|i| first + i * step).collect();
                    let mut drawn: Vec<u32> = (0..s - count).map(|j| other(j, first, step)).collect();
                    drawn.sort();
                    let expected: Vec<u32> = (1..=s).filter(|b| !home.contains(b)).collect();
                    assert_eq!(drawn, expected, "s={s} n={n} k={k}");
                }
            }
        }
    }

    #[test]
    fn profiles_take_teller_and_account_from_the_right_branch() {
        assert!(
            script(0).contains("\\set tid 10 * (:h - 1)")
                && script(0).contains("\\set aid 100000 * (:h - 1)")
        );
        assert!(
            script(1).contains("\\set tid 10 * (:h - 1)")
                && script(1).contains("\\set aid 100000 * (:r - 1)")
        );
        assert!(
            script(2).contains("\\set tid 10 * (:r - 1)")
                && script(2).contains("\\set aid 100000 * (:r - 1)")
        );
        assert!(!script(0).contains(":r"));
        assert_eq!(file_name(2), "remote-teller-account.sql");
    }
}
