//! Certificate-based provisioning, protocol side (MshPRT v1.1 §5.4.1.11–§5.4.1.14, §5.4.2;
//! reference §7): records fetched before Invite with fragmentation, the caller's verdict, the
//! certificate's key used as the OOB public key, every records error typed, the device's
//! serving rules, and random bytes in the records states.
//!
//! The "certificates" here are opaque bytes: X.509 is `cert/`'s business. The stub verdict
//! takes the public key from the first 64 octets of the device record.

mod prov_support;

use std::time::Duration;

use meshprov::crypto::ecdh::KeyPair;
use meshprov::crypto::provisioning::Algorithm;
use meshprov::provisioning::records::{
    DEFAULT_FRAGMENT_SIZE, MAX_FRAGMENT_SIZE, MAX_RECORD_LEN, record_name,
};
use meshprov::provisioning::{
    AlgorithmPolicy, AuthPolicy, CloseReason, Device, DeviceConfig, Direction, Event, Fault,
    Provisioner, ProvisionerConfig, ProvisioningError, RecordsFault, RecordsPolicy,
};
use meshprov::wire::{
    Algorithms, FailedCode, Invite, OobType, PduType, ProvisioningPdu, PublicKeyType, RecordId,
    RecordRequest, RecordResponse, RecordStatus, RecordsList, StartAuth, StartPublicKey,
};
use proptest::prelude::*;
use prov_support::{Pair, caps, device_config, key_pair, params, rng};

const STATIC: [u8; 16] = [0x5a; 16];

/// An opaque "device certificate" of `len` octets that carries `key`'s public key first.
fn device_record(key: &KeyPair, len: usize) -> Vec<u8> {
    let mut r = key.public_key().as_bytes().to_vec();
    r.extend((0..len.saturating_sub(64)).map(|i| (i * 7 + 3) as u8));
    r.truncate(len.max(64));
    r
}

fn intermediate(n: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8) ^ n.wrapping_mul(31)).collect()
}

/// The device side: Public Key OOB offered, the key pair, the records.
fn cert_device(key: &KeyPair, records: Vec<(RecordId, Vec<u8>)>) -> DeviceConfig {
    let mut c = caps();
    c.public_key_type = PublicKeyType::OOB_AVAILABLE;
    let mut dc = device_config(c);
    dc.key_pair = Some(key.clone());
    dc.records = records;
    dc
}

fn records(key: &KeyPair, device_len: usize, intermediates: &[usize]) -> Vec<(RecordId, Vec<u8>)> {
    let mut r = vec![(RecordId::DEVICE_CERTIFICATE, device_record(key, device_len))];
    for (n, len) in (0u16..).zip(intermediates) {
        r.push((RecordId(0x0002 + n), intermediate(n as u8, *len)));
    }
    r
}

fn fetch_config(fragment_size: u16, algorithm: AlgorithmPolicy) -> ProvisionerConfig {
    ProvisionerConfig {
        algorithm,
        records: RecordsPolicy::Fetch { fragment_size },
        ..ProvisionerConfig::default()
    }
}

/// The stub verifier: the key is the first 64 octets of the device record.
fn accept_first_64() -> prov_support::CertAnswer {
    Box::new(|cert: &[u8], _: &[Vec<u8>]| {
        cert.get(..64)
            .and_then(|k| <[u8; 64]>::try_from(k).ok())
            .ok_or_else(|| "no key".to_string())
    })
}

fn pair(config: ProvisionerConfig, dc: DeviceConfig, seed: u64) -> Pair {
    let mut p = Pair::new(
        Provisioner::new(config, params(), rng(seed)),
        Device::new(dc, rng(seed + 1)),
    );
    p.cert_answer = Some(accept_first_64());
    p
}

fn received_types(p: &Pair) -> Vec<PduType> {
    p.d.transcript()
        .iter()
        .filter(|e| e.direction == Direction::Received)
        .filter_map(|e| e.pdu_type)
        .collect()
}

fn sent_by_device(p: &Pair) -> Vec<PduType> {
    p.d.transcript()
        .iter()
        .filter(|e| e.direction == Direction::Sent)
        .filter_map(|e| e.pdu_type)
        .collect()
}

/// What `Event::RecordsReceived` carried: device certificate, intermediates, list.
type Records = (Vec<u8>, Vec<Vec<u8>>, Vec<RecordId>);

fn records_received(p: &Pair) -> Option<Records> {
    p.p_events.iter().find_map(|e| match e {
        Event::RecordsReceived {
            device_certificate,
            intermediates,
            list,
        } => Some((
            device_certificate.clone(),
            intermediates.clone(),
            list.clone(),
        )),
        _ => None,
    })
}

#[test]
fn happy_path_every_algorithm_fragment_size_and_chain_length() {
    let mut seed = 10;
    for (alg, expected) in [
        (AlgorithmPolicy::Cmac, Algorithm::CmacAes128),
        (AlgorithmPolicy::Hmac, Algorithm::HmacSha256),
    ] {
        for fragment_size in [56u16, 20, 57, 1024] {
            for chain in [&[][..], &[300][..], &[300, 57, 1][..]] {
                seed += 2;
                let key = key_pair(1000 + seed);
                let recs = records(&key, 500, chain);
                let mut p = pair(
                    fetch_config(fragment_size, alg),
                    cert_device(&key, recs.clone()),
                    seed,
                );
                p.start();
                p.run();
                let ctx = format!("{alg:?} fragment {fragment_size} chain {chain:?}");
                let outcome = p
                    .outcome()
                    .unwrap_or_else(|| panic!("{ctx}: {:?}", p.p_failed()));
                assert_eq!(outcome.algorithm, expected, "{ctx}");
                assert!(outcome.public_key_oob, "{ctx}");
                assert_eq!(outcome.auth, StartAuth::NoOob, "{ctx}");
                assert_eq!(
                    outcome.device_public_key.as_bytes(),
                    key.public_key().as_bytes(),
                    "{ctx}"
                );
                assert_eq!(p.p.close_reason(), Some(CloseReason::SUCCESS));

                // The records, reassembled.
                let (cert, ints, list) = records_received(&p).expect("RecordsReceived");
                assert_eq!(cert, recs[0].1, "{ctx}");
                let want: Vec<Vec<u8>> = recs[1..].iter().map(|(_, r)| r.clone()).collect();
                assert_eq!(ints, want, "{ctx}");
                let ids: Vec<RecordId> = recs.iter().map(|(id, _)| *id).collect();
                assert_eq!(list, ids, "{ctx}");

                // Order: Records Get, Record Requests, then Invite; offsets grow by what was
                // received; the Start selects the OOB public key.
                assert_eq!(
                    ProvisioningPdu::parse(&p.p2d[0]).unwrap(),
                    ProvisioningPdu::RecordsGet
                );
                let requests: Vec<RecordRequest> = p
                    .p2d
                    .iter()
                    .filter_map(|b| match ProvisioningPdu::parse(b).unwrap() {
                        ProvisioningPdu::RecordRequest(r) => Some(r),
                        _ => None,
                    })
                    .collect();
                let mut expected_requests = Vec::new();
                for (id, r) in &recs {
                    let mut off = 0usize;
                    while off < r.len() {
                        expected_requests.push(RecordRequest {
                            record_id: *id,
                            fragment_offset: off as u16,
                            fragment_max_size: fragment_size,
                        });
                        off += usize::from(fragment_size);
                    }
                }
                assert_eq!(requests, expected_requests, "{ctx}");
                let invite_at = p
                    .p2d
                    .iter()
                    .position(|b| b[0] == PduType::INVITE.0)
                    .unwrap();
                assert_eq!(
                    invite_at,
                    1 + requests.len(),
                    "{ctx}: records before Invite"
                );
                let start = p
                    .p2d
                    .iter()
                    .find_map(|b| match ProvisioningPdu::parse(b).unwrap() {
                        ProvisioningPdu::Start(s) => Some(s),
                        _ => None,
                    })
                    .unwrap();
                assert_eq!(start.public_key, StartPublicKey::Oob, "{ctx}");

                // The device never sent its public key, and got the Data.
                assert!(!sent_by_device(&p).contains(&PduType::PUBLIC_KEY), "{ctx}");
                assert!(received_types(&p).contains(&PduType::DATA), "{ctx}");
                assert!(p.d.is_finished() && p.d.error().is_none(), "{ctx}");
            }
        }
    }
}

#[test]
fn certificate_with_static_oob_authentication() {
    let key = key_pair(1003);
    let mut dc = cert_device(&key, records(&key, 200, &[100]));
    dc.capabilities.oob_type = OobType::STATIC_OOB_AVAILABLE | OobType::ONLY_OOB_AUTHENTICATED;
    dc.capabilities.algorithms = Algorithms::HMAC_SHA256;
    dc.static_oob = Some(STATIC.to_vec());
    let mut config = fetch_config(DEFAULT_FRAGMENT_SIZE, AlgorithmPolicy::Auto);
    config.auth = AuthPolicy::Static(STATIC.to_vec());
    let mut p = pair(config, dc, 3);
    p.start();
    p.run();
    let o = p
        .outcome()
        .unwrap_or_else(|| panic!("{:?} {:?}", p.p_failed(), p.d_failed()));
    assert!(o.public_key_oob);
    assert_eq!(o.auth, StartAuth::StaticOob);
}

#[test]
fn no_oob_needs_allow_no_oob_without_records() {
    // Without a certificate, the same device (no OOB at all) is refused by default: the
    // records policy is what makes No OOB authentication acceptable.
    let key = key_pair(1004);
    let dc = cert_device(&key, records(&key, 100, &[]));
    let mut p = pair(ProvisionerConfig::default(), dc, 4);
    p.start();
    p.run();
    assert_eq!(p.p_failed(), Some(&ProvisioningError::NoOobNotAllowed));
    assert!(records_received(&p).is_none());
    assert_eq!(
        p.p2d[0][0],
        PduType::INVITE.0,
        "no records without a policy"
    );
}

#[test]
fn rejected_certificate_ends_before_invite_and_never_sends_data() {
    let key = key_pair(1005);
    let dc = cert_device(&key, records(&key, 500, &[300]));
    let mut p = pair(fetch_config(56, AlgorithmPolicy::Auto), dc, 5);
    p.cert_answer = Some(Box::new(|_: &[u8], _: &[Vec<u8>]| {
        Err("chain does not end at a trusted root".to_string())
    }));
    p.start();
    p.run();
    let e = p.p_failed().expect("failed").clone();
    assert_eq!(
        e,
        ProvisioningError::CertificateRejected("chain does not end at a trusted root".into())
    );
    assert_eq!(e.fault(), Fault::Peer);
    assert_eq!(p.p.close_reason(), Some(CloseReason::FAIL));
    let msg = e.user_message();
    assert!(
        msg.contains("could not be verified: chain does not end at a trusted root")
            && msg.contains("do not provision this device"),
        "{msg}"
    );
    // Neither Invite nor Data ever reached the device; the provisioner sent nothing after.
    let got = received_types(&p);
    assert!(
        !got.contains(&PduType::DATA) && !got.contains(&PduType::INVITE),
        "{got:?}"
    );
    assert!(p.p2d.iter().all(|b| b[0] != PduType::DATA.0));
    assert_eq!(p.p.poll_transmit(), None);
    // The device is still waiting for Invite (the link close ends it).
    assert_eq!(p.d.state_name(), "ExpectInvite");
    // Late answers are refused and change nothing.
    let now = p.now;
    assert_eq!(
        p.p.provide_device_public_key(now, *key.public_key().as_bytes()),
        Err(ProvisioningError::WrongState("provide_device_public_key"))
    );
    assert_eq!(p.p.close_reason(), Some(CloseReason::FAIL));
}

#[test]
fn decision_api_in_the_wrong_state_and_invalid_keys() {
    let key = key_pair(1006);
    let mut p = pair(
        fetch_config(56, AlgorithmPolicy::Auto),
        cert_device(&key, records(&key, 100, &[])),
        6,
    );
    let now = p.now;
    assert_eq!(
        p.p.reject_certificate(now, "x"),
        Err(ProvisioningError::WrongState("reject_certificate"))
    );
    p.cert_answer = None;
    p.start();
    p.run();
    assert_eq!(p.p.state_name(), "ExpectCertificateDecision");
    // Not a point on the curve: the session fails, and says so.
    let e =
        p.p.provide_device_public_key(p.now, [0x11; 64])
            .unwrap_err();
    assert!(matches!(e, ProvisioningError::InvalidPublicKey(_)), "{e:?}");
    assert!(p.p.is_finished());
    assert_eq!(p.p.close_reason(), Some(CloseReason::FAIL));
}

#[test]
fn certificate_key_must_match_a_configured_oob_key() {
    let key = key_pair(1007);
    let mut config = fetch_config(56, AlgorithmPolicy::Auto);
    config.oob_public_key = Some(*key_pair(1008).public_key().as_bytes());
    let mut p = pair(config, cert_device(&key, records(&key, 100, &[])), 7);
    p.start();
    p.run();
    assert_eq!(p.p_failed(), Some(&ProvisioningError::OobPublicKeyMismatch));
}

#[test]
fn the_protocol_timer_runs_while_the_caller_decides() {
    let key = key_pair(1009);
    let mut p = pair(
        fetch_config(56, AlgorithmPolicy::Auto),
        cert_device(&key, records(&key, 100, &[])),
        9,
    );
    p.cert_answer = None;
    p.start();
    p.run();
    assert_eq!(p.p.state_name(), "ExpectCertificateDecision");
    let deadline = p.p.poll_timeout().expect("timer running");
    assert!(deadline <= p.now + Duration::from_secs(60));
    assert!(deadline > p.now);
    p.p.handle_timeout(p.now);
    assert!(!p.p.is_finished(), "a spurious wake-up is a no-op");
    p.p.handle_timeout(deadline);
    assert_eq!(p.p.error(), Some(&ProvisioningError::Timeout));
    assert_eq!(p.p.close_reason(), Some(CloseReason::TIMEOUT));
}

#[test]
fn device_without_public_key_oob_is_refused() {
    let key = key_pair(1011);
    let mut dc = cert_device(&key, records(&key, 100, &[]));
    dc.capabilities.public_key_type = PublicKeyType::EMPTY;
    let mut p = pair(fetch_config(56, AlgorithmPolicy::Auto), dc, 11);
    p.start();
    p.run();
    assert_eq!(
        p.p_failed(),
        Some(&ProvisioningError::PublicKeyOobNotOffered)
    );
    assert!(!received_types(&p).contains(&PduType::DATA));
    assert!(p.p2d.iter().all(|b| b[0] != PduType::START.0));
}

#[test]
fn wrong_private_key_fails_the_confirmation_on_the_device_side() {
    // The certificate carries key A, the device holds key B: the provisioner's ECDH uses A,
    // the device's B. The device notices first: it checks the provisioner's Confirmation when
    // the provisioner's Random arrives, and sends Provisioning Failed (Confirmation Failed).
    let cert_key = key_pair(1012);
    let device_key = key_pair(1013);
    let mut dc = cert_device(&device_key, records(&cert_key, 300, &[]));
    dc.key_pair = Some(device_key);
    let mut p = pair(fetch_config(56, AlgorithmPolicy::Auto), dc, 12);
    p.start();
    p.run();
    assert_eq!(p.d.error(), Some(&ProvisioningError::ConfirmationFailed));
    assert_eq!(
        p.p_failed(),
        Some(&ProvisioningError::FailedReceived(
            FailedCode::CONFIRMATION_FAILED
        ))
    );
    assert!(!received_types(&p).contains(&PduType::DATA));
    assert!(
        p.p_events
            .iter()
            .all(|e| !matches!(e, Event::CommitRequired { .. }))
    );
}

fn fault_case(fault: Option<RecordsFault>, recs: Vec<(RecordId, Vec<u8>)>, frag: u16) -> Pair {
    let key = key_pair(1020);
    let mut dc = cert_device(&key, recs);
    dc.records_fault = fault;
    let mut p = pair(fetch_config(frag, AlgorithmPolicy::Auto), dc, 20);
    p.start();
    p.run();
    assert!(p.p.is_finished());
    assert_eq!(p.p.close_reason(), Some(CloseReason::FAIL));
    assert!(records_received(&p).is_none(), "no records delivered");
    assert!(!received_types(&p).contains(&PduType::INVITE));
    p
}

#[test]
fn each_records_fault_has_its_typed_error() {
    let key = key_pair(1020);
    let recs = || records(&key, 500, &[120, 90, 30]);
    let dev = RecordId::DEVICE_CERTIFICATE;
    let p = fault_case(Some(RecordsFault::LieTotalLength), recs(), 56);
    assert_eq!(
        p.p_failed(),
        Some(&ProvisioningError::RecordTotalLengthChanged {
            record: dev,
            first: 500,
            now: 501
        })
    );
    let p = fault_case(Some(RecordsFault::OutOfBoundsFragment), recs(), 56);
    assert_eq!(
        p.p_failed(),
        Some(&ProvisioningError::RecordFragmentOutOfBounds {
            record: dev,
            offset: 448,
            len: 53,
            total_length: 500
        })
    );
    let p = fault_case(Some(RecordsFault::TruncateRecord), recs(), 20);
    assert_eq!(
        p.p_failed(),
        Some(&ProvisioningError::RecordTruncated {
            record: dev,
            received: 500,
            total_length: 600
        })
    );
    let p = fault_case(Some(RecordsFault::OmitRecord(0x0003)), recs(), 56);
    assert_eq!(
        p.p_failed(),
        Some(&ProvisioningError::RecordNotPresent(RecordId(0x0003)))
    );
    // The device certificate itself not listed.
    let mut no_device = recs();
    no_device.remove(0);
    let p = fault_case(None, no_device, 56);
    let e = p.p_failed().unwrap();
    assert_eq!(e, &ProvisioningError::MissingRecord(dev));
    assert_eq!(
        e.to_string(),
        "the device has no Device Certificate (0x0001) record"
    );
    assert!(e.user_message().contains("another OOB method"));
    // A record above the 4096-octet cap.
    let p = fault_case(
        None,
        records(&key, usize::from(MAX_RECORD_LEN) + 1, &[]),
        56,
    );
    assert_eq!(
        p.p_failed(),
        Some(&ProvisioningError::RecordTooLarge {
            record: dev,
            total_length: MAX_RECORD_LEN + 1
        })
    );
    // Every records error is the device's fault, closes with Fail and tells what to do.
    for e in [
        ProvisioningError::RecordTotalLengthChanged {
            record: dev,
            first: 1,
            now: 2,
        },
        ProvisioningError::RecordTruncated {
            record: RecordId(0x0004),
            received: 1,
            total_length: 2,
        },
        ProvisioningError::InvalidRecordsList("x"),
    ] {
        assert_eq!(e.fault(), Fault::Peer);
        assert_eq!(e.close_reason(), CloseReason::FAIL);
        assert_eq!(e.failed_code(), FailedCode::INVALID_FORMAT);
        assert!(e.user_message().contains("retry"), "{}", e.user_message());
    }
    assert_eq!(
        record_name(RecordId(0x0004)),
        "Intermediate Certificate 3 (0x0004)"
    );
}

/// Runs a session whose device's PDUs pass through `tamper`; returns the provisioner's error.
fn tampered(tamper: impl FnMut(Vec<u8>) -> Vec<u8> + 'static) -> ProvisioningError {
    let key = key_pair(1030);
    let mut p = pair(
        fetch_config(20, AlgorithmPolicy::Auto),
        cert_device(&key, records(&key, 100, &[50])),
        30,
    );
    let mut tamper = tamper;
    p.tamper = Some(Box::new(move |_: &[Vec<u8>], pdu: Vec<u8>| tamper(pdu)));
    p.start();
    p.run();
    assert!(!received_types(&p).contains(&PduType::INVITE));
    p.p_failed().expect("failed").clone()
}

fn edit_response(pdu: Vec<u8>, f: impl Fn(&mut RecordResponse)) -> Vec<u8> {
    match ProvisioningPdu::parse(&pdu) {
        Ok(ProvisioningPdu::RecordResponse(mut r)) => {
            f(&mut r);
            let mut out = vec![PduType::RECORD_RESPONSE.0, r.status.0];
            out.extend_from_slice(&r.record_id.0.to_be_bytes());
            out.extend_from_slice(&r.fragment_offset.to_be_bytes());
            out.extend_from_slice(&r.total_length.to_be_bytes());
            out.extend_from_slice(&r.data);
            out
        }
        _ => pdu,
    }
}

#[test]
fn record_responses_must_answer_the_request() {
    let dev = RecordId::DEVICE_CERTIFICATE;
    let e = tampered(|p| edit_response(p, |r| r.record_id = RecordId(0x0002)));
    assert!(
        matches!(e, ProvisioningError::InvalidRecordResponse { record, .. } if record == dev),
        "{e:?}"
    );
    let e = tampered(|p| {
        edit_response(p, |r| {
            if r.fragment_offset == 20 {
                r.fragment_offset = 21;
            }
        })
    });
    assert!(
        matches!(e, ProvisioningError::InvalidRecordResponse { reason, .. } if reason.contains("Offset")),
        "{e:?}"
    );
    let e = tampered(|p| {
        edit_response(p, |r| {
            if r.fragment_offset == 40 {
                r.status = RecordStatus::OFFSET_OUT_OF_BOUNDS;
                r.data.clear();
            }
        })
    });
    assert_eq!(
        e,
        ProvisioningError::RecordOffsetOutOfBounds {
            record: dev,
            offset: 40
        }
    );
    let e = tampered(|p| edit_response(p, |r| r.status = RecordStatus(0x07)));
    assert!(
        matches!(e, ProvisioningError::InvalidRecordResponse { reason, .. } if reason.contains("RFU")),
        "{e:?}"
    );
    let e = tampered(|p| {
        edit_response(p, |r| {
            r.total_length = 0;
            r.data.clear();
        })
    });
    assert!(
        matches!(e, ProvisioningError::InvalidRecordResponse { reason, .. } if reason.contains("Total Length is 0")),
        "{e:?}"
    );
    // 21 octets when 20 were asked for (within Total Length).
    let e = tampered(|p| edit_response(p, |r| r.data.push(0)));
    assert!(
        matches!(e, ProvisioningError::InvalidRecordResponse { reason, .. } if reason.contains("longer")),
        "{e:?}"
    );
    // A Records List naming a record twice.
    let e = tampered(|p| match ProvisioningPdu::parse(&p) {
        Ok(ProvisioningPdu::RecordsList(_)) => vec![0x0D, 0, 0, 0, 1, 0, 2, 0, 1],
        _ => p,
    });
    assert_eq!(
        e,
        ProvisioningError::InvalidRecordsList("a record ID appears twice")
    );
    // Some other PDU instead of the Records List.
    let e = tampered(|p| match ProvisioningPdu::parse(&p) {
        Ok(ProvisioningPdu::RecordsList(_)) => ProvisioningPdu::Invite(Invite {
            attention_duration: 0,
        })
        .to_vec(),
        _ => p,
    });
    assert!(
        matches!(e, ProvisioningError::UnexpectedPdu { received, .. } if received == PduType::INVITE),
        "{e:?}"
    );
}

#[test]
fn a_device_that_does_not_know_records_fails_the_session() {
    // A Mesh 1.0 device answers Records Get (an RFU type for it) with Provisioning Failed.
    let key = key_pair(1031);
    let mut p = pair(
        fetch_config(56, AlgorithmPolicy::Auto),
        cert_device(&key, Vec::new()),
        31,
    );
    p.tamper = Some(Box::new(|_: &[Vec<u8>], _: Vec<u8>| {
        ProvisioningPdu::Failed(FailedCode::INVALID_PDU).to_vec()
    }));
    p.start();
    p.run();
    assert_eq!(
        p.p_failed(),
        Some(&ProvisioningError::FailedReceived(FailedCode::INVALID_PDU))
    );
}

#[test]
fn fragment_size_bounds() {
    for bad in [0, MAX_FRAGMENT_SIZE + 1] {
        let mut p = Provisioner::new(fetch_config(bad, AlgorithmPolicy::Auto), params(), rng(1));
        p.start(meshprov::time::Instant::from_millis(0));
        assert!(
            matches!(p.error(), Some(ProvisioningError::InvalidConfig(_))),
            "{bad}"
        );
        assert_eq!(p.poll_transmit(), None);
    }
    assert_eq!(
        RecordsPolicy::pb_adv(),
        RecordsPolicy::Fetch { fragment_size: 56 }
    );
    assert_eq!(
        RecordsPolicy::pb_gatt(69),
        RecordsPolicy::Fetch { fragment_size: 57 }
    );
    assert_eq!(
        RecordsPolicy::pb_gatt(517),
        RecordsPolicy::Fetch { fragment_size: 505 }
    );
    assert_eq!(
        RecordsPolicy::pb_gatt(23),
        RecordsPolicy::Fetch { fragment_size: 56 }
    );
    assert_eq!(RecordsPolicy::default(), RecordsPolicy::None);
    assert!(ProvisionerConfig::default().records == RecordsPolicy::None);
}

// ----- the device's side -----

fn device_with(records: Vec<(RecordId, Vec<u8>)>) -> Device {
    let mut dc = device_config(caps());
    dc.records = records;
    Device::new(dc, rng(40))
}

fn ask(d: &mut Device, pdu: ProvisioningPdu) -> ProvisioningPdu {
    d.handle_pdu(meshprov::time::Instant::from_millis(5), &pdu.to_vec());
    let out = d.poll_transmit().expect("an answer");
    assert_eq!(d.poll_transmit(), None);
    ProvisioningPdu::parse(&out).unwrap()
}

fn request(id: u16, offset: u16, max: u16) -> ProvisioningPdu {
    ProvisioningPdu::RecordRequest(RecordRequest {
        record_id: RecordId(id),
        fragment_offset: offset,
        fragment_max_size: max,
    })
}

#[test]
fn device_serves_the_list_and_fragments() {
    let cert: Vec<u8> = (0..100u8).collect();
    let mut d = device_with(vec![
        (RecordId(0x0003), vec![9; 10]),
        (RecordId::DEVICE_CERTIFICATE, cert.clone()),
        (RecordId(0x0002), vec![8; 5]),
    ]);
    assert_eq!(
        ask(&mut d, ProvisioningPdu::RecordsGet),
        ProvisioningPdu::RecordsList(RecordsList {
            provisioning_extensions: 0,
            record_ids: vec![RecordId(1), RecordId(2), RecordId(3)],
        })
    );
    let rsp = |status, id, off, total, data: &[u8]| {
        ProvisioningPdu::RecordResponse(RecordResponse {
            status,
            record_id: RecordId(id),
            fragment_offset: off,
            total_length: total,
            data: data.to_vec(),
        })
    };
    assert_eq!(
        ask(&mut d, request(1, 0, 56)),
        rsp(RecordStatus::SUCCESS, 1, 0, 100, &cert[..56])
    );
    assert_eq!(
        ask(&mut d, request(1, 56, 56)),
        rsp(RecordStatus::SUCCESS, 1, 56, 100, &cert[56..])
    );
    assert_eq!(
        ask(&mut d, request(1, 99, 1000)),
        rsp(RecordStatus::SUCCESS, 1, 99, 100, &cert[99..])
    );
    assert_eq!(
        ask(&mut d, request(1, 100, 56)),
        rsp(RecordStatus::OFFSET_OUT_OF_BOUNDS, 1, 100, 100, &[])
    );
    assert_eq!(
        ask(&mut d, request(1, 5000, 56)),
        rsp(RecordStatus::OFFSET_OUT_OF_BOUNDS, 1, 5000, 100, &[])
    );
    assert_eq!(
        ask(&mut d, request(0x0011, 0, 56)),
        rsp(RecordStatus::NOT_PRESENT, 0x0011, 0, 0, &[])
    );
    // Records traffic leaves the device waiting for Invite.
    assert_eq!(d.state_name(), "ExpectInvite");
    assert!(!d.is_finished());
}

#[test]
fn device_refuses_records_after_invite() {
    for late in [ProvisioningPdu::RecordsGet, request(1, 0, 56)] {
        let mut d = device_with(vec![(RecordId::DEVICE_CERTIFICATE, vec![1; 10])]);
        let caps_pdu = ask(
            &mut d,
            ProvisioningPdu::Invite(Invite {
                attention_duration: 0,
            }),
        );
        assert!(matches!(caps_pdu, ProvisioningPdu::Capabilities(_)));
        let expected_type = late.pdu_type();
        assert_eq!(
            ask(&mut d, late),
            ProvisioningPdu::Failed(FailedCode::UNEXPECTED_PDU)
        );
        assert!(
            matches!(d.error(), Some(ProvisioningError::UnexpectedPdu { received, .. }) if *received == expected_type)
        );
    }
}

#[test]
fn device_with_no_records_lists_none() {
    let mut d = device_with(Vec::new());
    assert_eq!(
        ask(&mut d, ProvisioningPdu::RecordsGet),
        ProvisioningPdu::RecordsList(RecordsList {
            provisioning_extensions: 0,
            record_ids: Vec::new(),
        })
    );
}

// ----- random input in the records states -----

/// A provisioner in `ExpectRecordsList` (0) or in `ExpectRecordResponse` after one fragment
/// (1).
fn in_records_state(which: u8) -> Provisioner {
    let now = meshprov::time::Instant::from_millis(1);
    let mut p = Provisioner::new(fetch_config(20, AlgorithmPolicy::Auto), params(), rng(50));
    p.start(now);
    assert_eq!(p.state_name(), "ExpectRecordsList");
    if which == 1 {
        p.handle_pdu(now, &[0x0D, 0, 0, 0, 1, 0, 2]);
        p.handle_pdu(
            now,
            &edit_response(
                vec![PduType::RECORD_RESPONSE.0, 0, 0, 1, 0, 0, 0, 100, 1],
                |r| r.data = vec![7; 20],
            ),
        );
        assert_eq!(p.state_name(), "ExpectRecordResponse");
    }
    while p.poll_transmit().is_some() {}
    while p.poll_event().is_some() {}
    p
}

fn records_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        (
            prop_oneof![Just(0x0Bu8), Just(0x0D)],
            proptest::collection::vec(any::<u8>(), 0..70)
        )
            .prop_map(|(t, mut v)| {
                v.insert(0, t);
                v
            }),
        // A Record Response header close to the expected one.
        (
            0u8..4,
            0u16..4,
            prop_oneof![Just(20u16), 0u16..200],
            0u16..5000,
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(status, id, offset, total, data)| {
                let mut v = vec![0x0B, status];
                v.extend_from_slice(&id.to_be_bytes());
                v.extend_from_slice(&offset.to_be_bytes());
                v.extend_from_slice(&total.to_be_bytes());
                v.extend_from_slice(&data);
                v
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_in_the_records_states_never_panic(
        which in 0u8..2,
        inputs in proptest::collection::vec(records_bytes(), 1..6),
    ) {
        let mut p = in_records_state(which);
        let now = meshprov::time::Instant::from_millis(2);
        for bytes in &inputs {
            p.handle_pdu(now, bytes);
            while let Some(out) = p.poll_transmit() {
                // Only records PDUs before the verdict: never Invite, never Data.
                prop_assert!(out[0] == PduType::RECORD_REQUEST.0, "{out:?}");
            }
            if p.is_finished() {
                prop_assert_eq!(p.close_reason(), Some(CloseReason::FAIL));
            } else {
                prop_assert!(matches!(
                    p.state_name(),
                    "ExpectRecordsList" | "ExpectRecordResponse" | "ExpectCertificateDecision"
                ));
            }
        }
    }

    #[test]
    fn random_records_pdus_to_a_device_never_panic(
        inputs in proptest::collection::vec(records_bytes(), 1..6),
        req in (any::<u16>(), any::<u16>(), 1u16..2000),
    ) {
        let mut d = device_with(vec![(RecordId::DEVICE_CERTIFICATE, vec![3; 300])]);
        let now = meshprov::time::Instant::from_millis(2);
        d.handle_pdu(now, &request(req.0, req.1, req.2).to_vec());
        for bytes in &inputs {
            d.handle_pdu(now, bytes);
        }
        while let Some(out) = d.poll_transmit() {
            prop_assert!(ProvisioningPdu::parse(&out).is_ok(), "{out:?}");
        }
    }
}
