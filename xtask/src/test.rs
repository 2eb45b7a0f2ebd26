//! The `cargo xtask test` task: unit tests, then for every major whose source
//! can be had here, build the server and extension and prove that they work
//! on a real server; majors whose source cannot be had are reported, with
//! what was checked instead.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cmd::{self, tool};
use crate::flags::{Profile, Test};
use crate::layout;
use crate::versions::{Manifest, PgRequest, SUPPORTED_MAJORS};
use crate::{build, doctor, fetch, patch_tests, patches, regress, smoke, ui};

/// The major whose stock build `cargo xtask test` also checks.
const NEGATIVE_CONTROL_MAJOR: u32 = 18;

enum Outcome {
    Passed(Duration),
    NotAvailable(String),
    Failed(anyhow::Error),
}

impl Test {
    pub fn run(self) -> Result<()> {
        let start = Instant::now();
        doctor::ensure(true)?;
        doctor::ensure_packaging(true)?;
        let mut failures = 0;

        let unit = if self.no_unit {
            None
        } else {
            let step = ui::Step::start(
                "Unit tests (cargo test: the workspace's default members, xtask and spock-core)",
            );
            let log = layout::target_dir().join("test-logs").join("unit.log");
            cmd::run_logged(tool("cargo", ["test"]).dir(layout::project_root()), "cargo test", &log)?;
            let summary = regress::summarize_cargo_test(&log);
            Some((step.done(&summary), summary))
        };

        let manifest = Manifest::builtin();
        let requests: Vec<PgRequest> = if self.pg.is_empty() {
            SUPPORTED_MAJORS.iter().map(|&m| PgRequest::Major(m)).collect()
        } else {
            self.pg.clone()
        };
        let jobs = build::jobs(self.jobs);
        let mut results = Vec::new();
        for request in requests {
            let resolved = manifest.resolve(request);
            let version = resolved.version;
            let major = version.major;
            let t0 = Instant::now();
            eprintln!("\n=== PostgreSQL {version} ===");
            let outcome = (|| -> Result<Outcome> {
                let series = patches::discover(&patches::series_dir(major), major, false)?;
                ui::note(format!("patch series: {} patch(es) in patches/{major}, names and order valid", series.patches.len()));
                match fetch::obtain(&resolved, None) {
                    Ok(_) => {}
                    Err(e) if e.downcast_ref::<fetch::NotAvailable>().is_some() => {
                        let na = e.downcast_ref::<fetch::NotAvailable>().unwrap();
                        return Ok(Outcome::NotAvailable(format!(
                            "source not available on this machine ({}).\n\
                             Checked instead: the patch series in patches/{major} ({} patch(es); names, numbering and the OPTIONAL list are valid).\n\
                             Not checked: whether the patches apply, the server build, and the extension: even `cargo check` \
                             of the extension for pg{major} needs that major's server headers, which only its source provides.",
                            na.attempts.join("; "),
                            series.patches.len()
                        )));
                    }
                    Err(e) => return Err(e),
                };
                let installed = build::build_one(&resolved, None, Profile::Dev, false, jobs)?;
                smoke::smoke_test(&installed)?;
                if !patch_tests::run_for(&installed, true, &[], false)? {
                    bail!("the core patch tests failed on PostgreSQL {version}");
                }
                // One major also gets the negative control on a stock build
                // (one more server build); `test-patches --negative-control`
                // runs it for any major.
                if major == NEGATIVE_CONTROL_MAJOR {
                    let stock = build::build_stock(&resolved, jobs)?;
                    patch_tests::negative_control(&stock)?;
                    let step = ui::Step::start(
                        "spockbench on stock servers: init names the missing patch, --no-delta proceeds",
                    );
                    let remark = crate::bench::spockbench::unpatched_check(&stock)?;
                    step.done(&remark);
                    let step = ui::Step::start(format!(
                        "ABI of the patched server against stock PostgreSQL {version} (symbols, magic block, headers)"
                    ));
                    let summary = crate::abi::compare(&installed, &stock)?;
                    step.done(&summary);
                }
                let suite = regress::Suite::multi_node();
                if !regress::run_suite(&installed, &suite, &suite.schedule()?, None, false, true)? {
                    bail!("the multi-node regression suite failed on PostgreSQL {version}");
                }
                let step = ui::Step::start(
                    "spockbench: 3 nodes, conflicting mix, kill -9 and restart; then the --no-delta control",
                );
                let remark = crate::bench::spockbench::ci_check(&installed)?;
                step.done(&remark);
                // The packages: built from their own release trees, read back,
                // installed or unpacked, and started.
                crate::package::verify::run_for(&resolved, jobs)?;
                Ok(Outcome::Passed(t0.elapsed()))
            })()
            .unwrap_or_else(Outcome::Failed);
            match &outcome {
                Outcome::Passed(_) => {}
                Outcome::NotAvailable(why) => ui::note(format!("PostgreSQL {version}: {why}")),
                Outcome::Failed(e) => {
                    failures += 1;
                    ui::error(e);
                }
            }
            results.push((version, outcome));
        }

        println!("\nSummary of cargo xtask test");
        if let Some((elapsed, summary)) = unit {
            println!("  unit tests            passed   {:>8}  {summary}", ui::human(elapsed));
        }
        for (version, outcome) in &results {
            match outcome {
                Outcome::Passed(d) => println!(
                    "  PostgreSQL {:<10} passed   {:>8}  built; server checks, PostgreSQL suites, patch and multi-node tests, spockbench, .deb and .rpm packages passed{}",
                    version.to_string(),
                    ui::human(*d),
                    if version.major == NEGATIVE_CONTROL_MAJOR {
                        "; negative control and ABI comparison against a stock build passed"
                    } else {
                        ""
                    }
                ),
                Outcome::NotAvailable(_) => println!(
                    "  PostgreSQL {:<10} skipped            source not available on this machine (see above)",
                    version.to_string()
                ),
                Outcome::Failed(_) => println!("  PostgreSQL {:<10} FAILED", version.to_string()),
            }
        }
        println!("  total                          {:>8}", ui::human(start.elapsed()));
        if results.iter().all(|(_, o)| matches!(o, Outcome::NotAvailable(_))) {
            bail!("no PostgreSQL major could be built here, so the server side is untested");
        }
        if failures > 0 {
            bail!("{failures} major(s) failed; see the errors above");
        }
        Ok(())
    }
}
