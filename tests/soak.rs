//! Soak and fault runs (`meshprov soak`, `meshprov::tools::soak`): a building with every
//! device fault and a radio blackout, rolled out by the simulated driver, then the soak's
//! checks — every device in a reported final state, healthy devices done, each faulty kind as
//! expected, no address twice, every key a device holds in the store, memory bounded.
//!
//! The fast run (60 devices, in the default suite) is the only test of this binary that is
//! not ignored, so the resident set it measures is its own. The full soak (2,000 devices at
//! 30 % loss) is ignored in CI:
//! `cargo test --release --test soak -- --ignored --nocapture` (or `meshprov soak`).

use std::time::Duration;

use meshprov::rollout::Stage;
use meshprov::tools::soak::{self, FAULTY_KINDS, Kind, SoakOptions};

fn options(dir: &std::path::Path, devices: usize, loss: f64, faulty: f64) -> SoakOptions {
    SoakOptions {
        devices,
        loss,
        faulty,
        blackout: Some((Duration::from_secs(60), Duration::from_secs(60))),
        seed: 3,
        max_rss_mb: None,
        concurrency: None,
        dir: dir.to_path_buf(),
        progress: false,
    }
}

#[test]
fn every_fault_and_a_blackout_on_a_small_building() {
    let dir = tempfile::tempdir().unwrap();
    // 65 devices, 26 faulty: every kind twice; 20 % loss and a minute of blackout.
    let out = soak::run(&options(dir.path(), 65, 0.2, 0.4)).unwrap();
    let text = out.to_text();
    println!("{text}");
    assert!(out.passed(), "{text}");
    for k in FAULTY_KINDS {
        assert_eq!(out.kinds[&k].devices, 2, "{}", k.name());
    }
    assert_eq!(out.kinds[&Kind::Healthy].devices, 39);
    // The faults did happen: nobody that should fail is done, the blackout lost copies.
    let failing = [
        Kind::VanishForGood,
        Kind::LateBeyond,
        Kind::ProvisioningFailed,
        Kind::RefusesData,
        Kind::ReflectPublicKey,
        Kind::ReflectConfirmation,
        Kind::ReflectRandom,
        Kind::GarbageRandom,
        Kind::GarbageMalformed,
        Kind::GarbageBadFcs,
    ];
    for k in failing {
        assert_eq!(out.kinds[&k].failed, 2, "{}: {text}", k.name());
        assert_eq!(out.kinds[&k].provisioned, 0, "{}", k.name());
    }
    assert_eq!(out.kinds[&Kind::VanishAndReturn].done, 2);
    assert!(out.air.adv_blackout > 0, "{:?}", out.air);
    assert_eq!(
        out.report.summary.failed,
        2 * failing.len() + out.kinds[&Kind::VanishAfterPdus].failed
    );
    assert!(out.report.devices.iter().all(|d| d.stage.is_final()));
    assert!(
        out.report
            .devices
            .iter()
            .filter(|d| d.stage == Stage::Failed)
            .all(|d| d.last_error.is_some())
    );
    assert_eq!(out.checks.len(), 7);
    // The memory samples: the start and each quarter.
    assert!(out.samples.len() >= 5, "{:?}", out.samples);

    // Same seed, same run.
    let again = tempfile::tempdir().unwrap();
    let out2 = soak::run(&options(again.path(), 65, 0.2, 0.4)).unwrap();
    let stages = |o: &soak::SoakOutcome| {
        o.report
            .devices
            .iter()
            .map(|d| (d.uuid, d.stage, d.last_error.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(stages(&out), stages(&out2));
    assert_eq!(out.report.summary.time_ms, out2.report.summary.time_ms);
}

#[test]
fn a_soak_refuses_a_used_directory_and_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("network.db"), b"").unwrap();
    let e = soak::run(&options(dir.path(), 10, 0.1, 0.5))
        .unwrap_err()
        .to_string();
    assert!(e.contains("already holds a store"), "{e}");
    let other = tempfile::tempdir().unwrap();
    let e = soak::run(&options(other.path(), 10, 0.95, 0.5))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--loss 0.95"), "{e}");
    assert_eq!(
        soak::parse_blackout("300:60").unwrap(),
        Some((Duration::from_secs(300), Duration::from_secs(60)))
    );
    assert_eq!(soak::parse_blackout("none").unwrap(), None);
    for bad in ["300", "a:60", "300:0", "300:x"] {
        assert!(soak::parse_blackout(bad).is_err(), "{bad}");
    }
}

/// The full soak: 2,000 devices at 30 % loss, 10 % of them faulty, a minute of blackout at
/// 300 s. Minutes of CPU in a release build.
#[test]
#[ignore]
fn full_soak_two_thousand_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), 2000, 0.3, 0.1);
    opts.blackout = Some((Duration::from_secs(300), Duration::from_secs(60)));
    opts.seed = 1;
    opts.progress = true;
    let out = soak::run(&opts).unwrap();
    let text = out.to_text();
    println!("{text}");
    assert!(out.passed(), "{text}");
}
