//! The simulated building's channel model (README "The simulated building", `radio::sim`):
//! measured loss, floor loss, collision and scanning rates match the model's parameters within
//! four standard deviations; range by floor; unprovisioned beacons; the devices' ECDH time; the
//! same seed gives the same run, bit for bit.

use std::time::Duration;

use meshprov::provisioning::{AuthPolicy, Direction, ProvisionerConfig, ProvisioningError};
use meshprov::radio::sim::{
    ADV_CHANNELS, AirConfig, Delivery, EndpointId, Received, SimAir, airtime,
};
use meshprov::sim::building::Building;
use meshprov::sim::node::{AD_TYPE_MESH_BEACON, VirtualDevice};
use meshprov::sim::run::{self, MemorySink, RunOptions};
use meshprov::time::Instant;
use meshprov::wire::{MeshBeacon, PduType};

/// Runs the air alone to its end, as a driver does: to each next instant, taking everything
/// due.
fn drain(air: &mut SimAir) -> Vec<Received> {
    drain_until(air, Instant::from_epoch(Duration::MAX))
}

fn drain_until(air: &mut SimAir, end: Instant) -> Vec<Received> {
    let mut out = Vec::new();
    while let Some(t) = air.next_delivery().filter(|t| *t <= end) {
        air.advance_to(t);
        while let Some(r) = air.pop_due_received() {
            out.push(r);
        }
    }
    out
}

/// `|observed − expected| < 4σ` for `hits` successes in `n` Bernoulli trials of probability
/// `p`.
fn within_four_sigma(hits: u64, n: u64, p: f64, what: &str) {
    let sigma = (p * (1.0 - p) / n as f64).sqrt();
    let observed = hits as f64 / n as f64;
    assert!(
        (observed - p).abs() < 4.0 * sigma,
        "{what}: observed {observed:.5} over {n}, expected {p:.5} ± 4 × {sigma:.5}"
    );
    eprintln!("{what}: observed {observed:.5} over {n}, expected {p:.5} (σ {sigma:.5})");
}

fn delivered_from(got: &[Received], from: EndpointId, to: EndpointId) -> u64 {
    got.iter()
        .filter(|r| {
            matches!(&r.delivery, Delivery::Adv { from: f, to: t, .. } if *f == from && *t == to)
        })
        .count() as u64
}

/// 20,000 advertising events at loss 0.2 on one floor: every copy a receiver hears is lost
/// with probability 0.2, whether it hears all three channels or scans one at a time.
#[test]
fn per_packet_loss_matches_the_model() {
    for (scan_window, what) in [
        (Duration::ZERO, "loss, three-channel receiver"),
        (Duration::from_millis(30), "loss, scanning receiver"),
    ] {
        let p = 0.2;
        let mut air = SimAir::new(
            AirConfig {
                loss: p,
                scan_window,
                ..AirConfig::default()
            },
            21,
        );
        let a = air.add_endpoint();
        let r = air.add_endpoint();
        for i in 0..20_000u32 {
            air.advertise(a, 0x2a, &i.to_be_bytes());
        }
        let got = drain(&mut air);
        let s = air.stats();
        assert_eq!(s.adv_events, 20_000);
        assert_eq!((s.adv_collided, s.adv_deaf), (0, 0), "one sender: {s:?}");
        assert_eq!(delivered_from(&got, a, r), s.adv_delivered);
        let heard = s.adv_delivered + s.adv_lost;
        if scan_window.is_zero() {
            assert_eq!(heard, 60_000, "all three copies of every event");
        } else {
            assert!(
                (19_500..=20_000).contains(&heard),
                "about one copy per event: {heard}"
            );
        }
        within_four_sigma(s.adv_lost, heard, p, what);
    }
}

/// Range by floor: the sender's floor loses `loss`, one floor away loses
/// `1 − (1 − loss)(1 − floor_loss)`, two floors away (beyond `max_floors = 1`) hears nothing.
#[test]
fn floors_add_loss_and_end_the_range() {
    let (p, q) = (0.1, 0.3);
    let mut air = SimAir::new(
        AirConfig {
            loss: p,
            floor_loss: q,
            max_floors: 1,
            scan_window: Duration::ZERO,
            ..AirConfig::default()
        },
        22,
    );
    let a = air.add_endpoint();
    let same = air.add_endpoint();
    let above = air.add_endpoint();
    let below = air.add_endpoint();
    let far = air.add_endpoint();
    air.set_floor(a, 3);
    air.set_floor(same, 3);
    air.set_floor(above, 4);
    air.set_floor(below, 2);
    air.set_floor(far, 5);
    for i in 0..20_000u32 {
        air.advertise(a, 0x2a, &i.to_be_bytes());
    }
    let got = drain(&mut air);
    let n = 60_000;
    within_four_sigma(delivered_from(&got, a, same), n, 1.0 - p, "same floor");
    let one_floor = (1.0 - p) * (1.0 - q);
    within_four_sigma(delivered_from(&got, a, above), n, one_floor, "one floor up");
    within_four_sigma(
        delivered_from(&got, a, below),
        n,
        one_floor,
        "one floor down",
    );
    assert_eq!(
        delivered_from(&got, a, far),
        0,
        "two floors away: out of range"
    );
    assert_eq!(air.config().loss_at(1), 1.0 - one_floor);
}

/// P(|X − Y| < t) for X, Y independent and uniform on 0..=n.
fn overlap_probability(n: u64, t: u64) -> f64 {
    let m = (n + 1) as f64;
    let pairs: f64 = (1..t).map(|d| 2.0 * (m - d as f64)).sum::<f64>() + m;
    pairs / (m * m)
}

/// Two senders start an event in the same round, each after its own advDelay (uniform
/// 0..=10 ms in µs): their copies on a channel overlap, and are lost at a receiver in range of
/// both, exactly when the two delays differ by less than one airtime. The measured rate
/// matches that geometry; a second sender out of the receiver's range (two floors away)
/// collides with nothing there, and a hidden one (in range of the receiver, not of the first
/// sender) collides as often as a visible one.
#[test]
fn collisions_match_the_overlap_geometry() {
    let len = 29;
    let t_us = airtime(len).as_micros() as u64;
    let n_us = 10_000;
    let expected = overlap_probability(n_us, t_us);
    // (floor of the second sender, expected collision rate at the receiver on floor 1)
    for (b_floor, p, what) in [
        (1, expected, "collisions, both senders in range"),
        (2, expected, "collisions, hidden sender one floor above"),
        (3, 0.0, "collisions, second sender out of range"),
    ] {
        let mut air = SimAir::new(
            AirConfig {
                adv_delay: Duration::from_micros(n_us),
                scan_window: Duration::ZERO,
                jitter: Duration::ZERO,
                // Collisions only: no extra loss between floors.
                floor_loss: 0.0,
                ..AirConfig::default()
            },
            23,
        );
        let a = air.add_endpoint();
        let b = air.add_endpoint();
        let r = air.add_endpoint();
        air.set_floor(a, 0);
        air.set_floor(b, b_floor);
        air.set_floor(r, 1);
        let rounds = 20_000u64;
        let mut heard = 0;
        for round in 0..rounds {
            air.advance_to(Instant::from_millis(round * 100));
            let mut data = vec![0u8; len];
            data[..8].copy_from_slice(&round.to_be_bytes());
            air.advertise(a, 0x29, &data);
            air.advertise(b, 0x29, &data);
            let got = drain_until(&mut air, Instant::from_millis(round * 100 + 60));
            // A collision takes all three copies (the same offset on every channel).
            match delivered_from(&got, a, r) {
                3 => heard += 1,
                0 => {}
                n => panic!("{what}: {n} copies in round {round}"),
            }
        }
        let s = air.stats();
        if p == 0.0 {
            assert_eq!(s.adv_collided, 0, "{what}: {s:?}");
            assert_eq!(heard, rounds, "{what}: r hears every event of a");
        } else {
            // Each lost round loses a's and b's copies at r.
            assert_eq!(s.adv_collided, 6 * (rounds - heard), "{what}: {s:?}");
            within_four_sigma(rounds - heard, rounds, p, what);
        }
    }
}

/// A receiver scanning 1 ms per channel hears copy k of an event only if that whole copy falls
/// in a window of channel k: (W − T)/(3W) per copy, (W − T)/W copies per event. Measured over
/// 20,000 events against the per-event sample variance.
#[test]
fn scanning_one_channel_at_a_time() {
    let window = Duration::from_millis(1);
    let len = 29;
    let mut air = SimAir::new(
        AirConfig {
            scan_window: window,
            ..AirConfig::default()
        },
        24,
    );
    let a = air.add_endpoint();
    let r = air.add_endpoint();
    let events = 20_000usize;
    for i in 0..events as u32 {
        let mut data = vec![0u8; len];
        data[..4].copy_from_slice(&i.to_be_bytes());
        air.advertise(a, 0x2a, &data);
    }
    let got = drain(&mut air);
    let mut per_event = vec![0u32; events];
    for g in &got {
        let Delivery::Adv { to, data, .. } = &g.delivery else {
            panic!("{g:?}");
        };
        assert_eq!(*to, r);
        // The copy came on the channel the receiver listened on for all of it.
        let last_bit =
            Instant::from_epoch(g.on_air.unwrap().since_epoch() - Duration::from_micros(1));
        let first_bit = Instant::from_epoch(g.on_air.unwrap().since_epoch() - airtime(len));
        assert_eq!(air.scan_channel(r, last_bit), g.channel);
        assert_eq!(air.scan_channel(r, first_bit), g.channel);
        assert!(ADV_CHANNELS.contains(&g.channel.unwrap()));
        let i = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        per_event[i] += 1;
    }
    let w = window.as_micros() as f64;
    let t = airtime(len).as_micros() as f64;
    let expected = (w - t) / w;
    let n = events as f64;
    let mean = per_event.iter().map(|&c| f64::from(c)).sum::<f64>() / n;
    let var = per_event
        .iter()
        .map(|&c| (f64::from(c) - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    let sigma = (var / n).sqrt();
    eprintln!("copies per event: {mean:.4}, expected {expected:.4} (σ {sigma:.4})");
    assert!(
        (mean - expected).abs() < 4.0 * sigma,
        "copies per event {mean:.4}, expected {expected:.4} ± 4 × {sigma:.4}"
    );
}

/// A busy little air: five endpoints on three floors, loss, collisions, beacons.
fn delivery_log(seed: u64) -> (Vec<Received>, meshprov::radio::sim::AirStats) {
    let mut air = SimAir::new(
        AirConfig {
            loss: 0.2,
            ..AirConfig::default()
        },
        seed,
    );
    let eps: Vec<EndpointId> = (0..5).map(|_| air.add_endpoint()).collect();
    for (i, ep) in eps.iter().enumerate() {
        air.set_floor(*ep, (i % 3) as i32);
    }
    air.set_periodic(eps[3], 0x2b, &[0; 23], Duration::from_millis(300), 3);
    air.set_periodic(eps[4], 0x2b, &[1; 23], Duration::from_millis(200), 1);
    let mut log = Vec::new();
    for step in 0..500u64 {
        air.advance_to(Instant::from_millis(step * 7));
        air.advertise(eps[(step % 3) as usize], 0x29, &step.to_be_bytes());
        log.extend(drain_until(&mut air, Instant::from_millis(step * 7 + 6)));
    }
    air.stop_periodic(eps[3]);
    air.stop_periodic(eps[4]);
    log.extend(drain(&mut air));
    (log, air.stats())
}

#[test]
fn same_seed_same_delivery_log() {
    let (one, stats) = delivery_log(31);
    assert!(stats.adv_lost > 0 && stats.adv_collided > 0, "{stats:?}");
    assert!(one.len() > 1000, "{}", one.len());
    assert_eq!(delivery_log(31), (one.clone(), stats), "bit for bit");
    let (other, _) = delivery_log(32);
    assert_ne!(one, other, "another seed, another run");
}

fn uuid_text(i: u32) -> String {
    format!("7b2c1a90-0000-4000-8000-{i:012x}")
}

/// An unprovisioned device on the air sends its Unprovisioned Device beacon (three events) every
/// `beacon_interval_ms`, and the beacon carries its UUID.
#[test]
fn unprovisioned_devices_beacon() {
    let text = format!(
        "[air]\nscan_window_ms = 0\n[[device]]\nuuid = \"{}\"\nbeacon_interval_ms = 1000\n",
        uuid_text(1)
    );
    let b = Building::parse(&text, "b").unwrap();
    let mut air = SimAir::new(b.air.clone(), 5);
    let listener = air.add_endpoint();
    let ep = air.add_endpoint();
    let mut dev = VirtualDevice::new(b.devices[0].clone(), ep, 5);
    dev.attach(&mut air);
    let got = drain_until(&mut air, Instant::from_millis(60_000));
    let mut beacons = 0;
    for g in &got {
        let Delivery::Adv {
            to, ad_type, data, ..
        } = &g.delivery
        else {
            panic!("{g:?}");
        };
        assert_eq!((*to, *ad_type), (listener, AD_TYPE_MESH_BEACON));
        match MeshBeacon::parse(data).unwrap() {
            MeshBeacon::UnprovisionedDevice(u) => assert_eq!(u.uuid, b.devices[0].uuid.0),
            other => panic!("{other:?}"),
        }
        beacons += 1;
    }
    // 60 s at one beacon a second, three events each, three channels heard.
    assert!((59 * 9..=61 * 9).contains(&beacons), "{beacons}");
}

fn gap(
    transcript: &[meshprov::provisioning::TranscriptEntry],
    from: PduType,
    to: PduType,
) -> Duration {
    let at = |t: PduType| {
        transcript
            .iter()
            .find(|e| e.direction == Direction::Received && e.pdu_type == Some(t))
            .map(|e| e.at)
            .unwrap()
    };
    at(to).saturating_duration_since(at(from))
}

/// A device answers nothing for `ecdh_ms` after the provisioner's Public Key: the provisioner's
/// Confirmation (which needs the device's Public Key) comes at least that much later; with
/// the device's public key out of band, its Confirmation waits and the provisioner's Random
/// comes later.
#[test]
fn the_device_cpu_computes_ecdh() {
    let run_with_ecdh = |ecdh_ms: u64, oob_key: bool, seed: u64| {
        let mut dev = format!(
            "[[device]]\nuuid = \"{}\"\nstatic_oob = \"00112233445566778899aabbccddeeff\"\necdh_ms = {ecdh_ms}\n",
            uuid_text(7)
        );
        let mut config = ProvisionerConfig {
            auth: AuthPolicy::Static(hex::decode("00112233445566778899aabbccddeeff").unwrap()),
            ..ProvisionerConfig::default()
        };
        if oob_key {
            dev += "public_key_oob = true\nprivate_key = \"529aa0670d72cd6497502ed473502b037e8803b5c60829a5a3caa219505530ba\"\n";
            config.oob_public_key = Some(
                hex::decode("f465e43ff23d3f1b9dc7dfc04da8758184dbc966204796eccf0d6cf5e16500cc0201d048bcbbd899eeefc424164e33c201c2b010ca6b4d43a8a155cad8ecb279")
                    .unwrap()
                    .try_into()
                    .unwrap(),
            );
        }
        let b = Building::parse(&dev, "b").unwrap();
        let mut sink = MemorySink::default();
        let r = run::run(
            &b,
            &[b.devices[0].uuid],
            &RunOptions {
                config,
                seed,
                ..RunOptions::default()
            },
            &mut sink,
        )
        .unwrap();
        let d = &r.results[0];
        assert!(d.outcome.is_ok(), "{:?}", d.outcome);
        let next = if oob_key {
            PduType::RANDOM
        } else {
            PduType::CONFIRMATION
        };
        gap(&d.device_transcript, PduType::PUBLIC_KEY, next)
    };
    for oob_key in [false, true] {
        let mut slow: Vec<Duration> = (0..5).map(|s| run_with_ecdh(300, oob_key, s)).collect();
        let mut fast: Vec<Duration> = (0..5).map(|s| run_with_ecdh(0, oob_key, s)).collect();
        slow.sort();
        fast.sort();
        eprintln!("oob key {oob_key}: Public Key to next PDU {fast:?} at 0 ms, {slow:?} at 300 ms");
        assert!(slow[0] >= Duration::from_millis(300), "{slow:?}");
        assert!(fast[2] < Duration::from_millis(300), "{fast:?}");
        let d = slow[2].saturating_sub(fast[2]);
        if oob_key {
            // The provisioner's Confirmation arrives during the computation, which hides part
            // of it.
            assert!(d >= Duration::from_millis(100), "{d:?}");
        } else {
            assert!(
                d >= Duration::from_millis(250) && d <= Duration::from_millis(400),
                "the median gap grows by the ECDH time: {d:?}"
            );
        }
    }
}

/// With the provisioner on floor 0 and `max_floors = 1`, the device on floor 1 is provisioned
/// and the one on floor 2 never answers (Link Open times out after 60 s).
#[test]
fn devices_beyond_range_are_not_reached() {
    let text = format!(
        "[air]\nmax_floors = 1\n[provisioner]\nfloor = 0\n\
         [[device]]\nuuid = \"{}\"\nfloor = 1\nstatic_oob = \"00112233445566778899aabbccddeeff\"\n\
         [[device]]\nuuid = \"{}\"\nfloor = 2\nstatic_oob = \"00112233445566778899aabbccddeeff\"\n",
        uuid_text(1),
        uuid_text(2)
    );
    let b = Building::parse(&text, "b").unwrap();
    let targets: Vec<_> = b.devices.iter().map(|d| d.uuid).collect();
    let mut sink = MemorySink::default();
    let config = ProvisionerConfig {
        auth: AuthPolicy::Static(hex::decode("00112233445566778899aabbccddeeff").unwrap()),
        ..ProvisionerConfig::default()
    };
    let r = run::run(
        &b,
        &targets,
        &RunOptions {
            config,
            ..RunOptions::default()
        },
        &mut sink,
    )
    .unwrap();
    assert!(r.results[0].outcome.is_ok(), "{:?}", r.results[0].outcome);
    assert!(
        matches!(r.results[1].outcome, Err(ProvisioningError::LinkClosed)),
        "{:?}",
        r.results[1].outcome
    );
    assert!(r.results[1].device_transcript.is_empty());
    assert!(r.virtual_time >= Duration::from_secs(60));
}

/// The 1,000-device building of README "The simulated building": the provisioner on floor 1,
/// devices on floors 0–2 (a third each), 5 % background loss, every fourth device a slow CPU
/// (300 ms ECDH), the others 18 ms; each device has its own static OOB value. The same text as
/// the README's shell loop writes.
fn thousand_devices() -> String {
    let mut text = String::from("[air]\nloss = 0.05\n[provisioner]\nfloor = 1\n");
    for i in 0..1000u32 {
        text += &format!(
            "[[device]]\nuuid = \"7b2c1a90-0000-4000-8001-{i:012x}\"\nfloor = {}\nstatic_oob = \"{i:032x}\"\necdh_ms = {}\n",
            i % 3,
            if i % 4 == 0 { 300 } else { 18 }
        );
    }
    text
}

/// Rehearses the 1,000-device building, 16 sessions at once: every device is provisioned, at
/// distinct addresses. Ignored in CI (about 30 s in the test profile); run it with
/// `cargo test --release --test sim_channel -- --ignored --nocapture` to see the wall time.
#[test]
#[ignore]
fn rehearse_a_thousand_devices() {
    let b = Building::parse(&thousand_devices(), "building-1000").unwrap();
    assert_eq!(b.devices.len(), 1000);
    let targets: Vec<_> = b.devices.iter().map(|d| d.uuid).collect();
    let opts = RunOptions {
        max_concurrent: 16,
        ..RunOptions::default()
    };
    let mut sink = MemorySink::default();
    let wall = std::time::Instant::now();
    let r = run::run_with(&b, &targets, &opts, &mut sink, |spec, config| {
        config.auth = AuthPolicy::Static(spec.static_oob.clone().unwrap());
    })
    .unwrap();
    let wall = wall.elapsed();
    let ok = r.results.iter().filter(|d| d.outcome.is_ok()).count();
    eprintln!(
        "1,000 devices, 16 at once: {ok} provisioned in {:?} of virtual time, {:?} of wall time; \
         {} retransmissions; {:?}",
        r.virtual_time, wall, r.retransmissions, r.air
    );
    assert_eq!(ok, 1000);
    let addresses: std::collections::BTreeSet<u16> =
        sink.records.iter().map(|n| n.address).collect();
    assert_eq!(addresses.len(), 1000);
}
