//! Sample data for the `wire` layer: spec vectors (MshPRT v1.1 §8.17.1, §8.17.2, §8.4) read from
//! `../shared/vectors/`, and the SLV encodings of reference §8.7 / §2.2.

use meshprov::wire::pb_adv::{self, MAX_PDU_LEN, seg_n_for};
use meshprov::wire::{
    Algorithm, Algorithms, BearerControl, Capabilities, GenericProvisioningPdu, InputOobActions,
    Invite, LinkCloseReason, MeshBeacon, OobType, OutputOobActions, PbAdvPdu, ProvValue,
    ProvisioningPdu, PublicKeyType, Start, StartAuth, StartPublicKey, TransactionContinuation,
    TransactionStart, WireError, fcs, reassemble, segment,
};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/../shared/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("missing {key}"))).unwrap()
}

fn emit(pdu: &ProvisioningPdu) -> Vec<u8> {
    let mut out = Vec::new();
    pdu.emit(&mut out);
    out
}

fn gpp(pdu: &GenericProvisioningPdu) -> Vec<u8> {
    let mut out = Vec::new();
    pdu.emit(&mut out);
    out
}

/// PB-ADV FCS, MshPRT v1.1 §5.3.1.1: every case of `pb-adv-fcs.json`.
#[test]
fn fcs_vectors() {
    let v = load("pb-adv-fcs.json");
    let cases = v["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let pdu = hex_field(case, "pdu");
        let want = hex_field(case, "fcs");
        assert_eq!(fcs(&pdu), want[0], "FCS of {}", case["pdu"]);
    }
}

/// Reference §2.2: CRC-8 check value over "123456789" is 0x2F, and the running CRC over
/// PDU ‖ FCS ends at the 0xCF residue (checked through `fcs`: fcs(PDU ‖ FCS) = 0xFF − 0xCF).
#[test]
fn fcs_check_value_and_residue() {
    assert_eq!(fcs(b"123456789"), 0x2F);
    for pdu in [&b"\x00\x00"[..], b"\x02\x00\x00\x00\x00\x00", b"hello mesh"] {
        let mut with_fcs = pdu.to_vec();
        with_fcs.push(fcs(pdu));
        assert_eq!(fcs(&with_fcs), 0xFF - 0xCF);
    }
}

fn round_trip_file(name: &str, algorithm: Algorithm) {
    let v = load(name);
    assert_eq!(v["algorithm"].as_u64().unwrap(), u64::from(algorithm.0));
    let keys = [
        "invite_pdu",
        "capabilities_pdu",
        "start_pdu",
        "public_key_pdu_provisioner",
        "public_key_pdu_device",
        "data_pdu",
        "complete_pdu",
    ];
    for key in keys {
        let bytes = hex_field(&v, key);
        let pdu = ProvisioningPdu::parse(&bytes).unwrap_or_else(|e| panic!("{name} {key}: {e}"));
        assert_eq!(emit(&pdu), bytes, "{name} {key} re-emit");
        let pdu2 = ProvisioningPdu::parse_with_algorithm(&bytes, algorithm).unwrap();
        assert_eq!(pdu, pdu2);
    }
    // Confirmation and Random PDUs built from the sample values.
    for (key, ty) in [
        ("confirmation_provisioner", 0x05),
        ("confirmation_device", 0x05),
        ("random_provisioner", 0x06),
        ("random_device", 0x06),
    ] {
        let mut bytes = vec![ty];
        bytes.extend(hex_field(&v, key));
        let pdu = ProvisioningPdu::parse_with_algorithm(&bytes, algorithm).unwrap();
        match &pdu {
            ProvisioningPdu::Confirmation(value) | ProvisioningPdu::Random(value) => {
                assert_eq!(Some(value.len()), algorithm.value_len())
            }
            other => panic!("{key}: parsed as {other:?}"),
        }
        assert_eq!(emit(&pdu), bytes);
        // The other algorithm's length is rejected when the context is given.
        let other = Algorithm(algorithm.0 ^ 1);
        assert!(matches!(
            ProvisioningPdu::parse_with_algorithm(&bytes, other),
            Err(WireError::BadLength { .. })
        ));
    }
    // Public keys split into X and Y as in the sample.
    let ProvisioningPdu::PublicKey(pk) =
        ProvisioningPdu::parse(&hex_field(&v, "public_key_pdu_device")).unwrap()
    else {
        panic!("not a public key")
    };
    assert_eq!(pk.to_bytes().to_vec(), hex_field(&v, "device_public_key"));
    // ConfirmationInputs = Invite params ‖ Capabilities params ‖ Start params ‖ keys (§5.4.2.5).
    let mut ci = Vec::new();
    for key in ["invite_pdu", "capabilities_pdu", "start_pdu"] {
        match ProvisioningPdu::parse(&hex_field(&v, key)).unwrap() {
            ProvisioningPdu::Invite(i) => ci.push(i.attention_duration),
            ProvisioningPdu::Capabilities(c) => ci.extend_from_slice(&c.params()),
            ProvisioningPdu::Start(s) => ci.extend_from_slice(&s.params()),
            other => panic!("{other:?}"),
        }
    }
    ci.extend(hex_field(&v, "provisioner_public_key"));
    ci.extend(hex_field(&v, "device_public_key"));
    assert_eq!(ci, hex_field(&v, "confirmation_inputs"));
}

/// MshPRT v1.1 §8.17.1 (CMAC algorithm) provisioning PDUs parse and re-emit byte-exact.
#[test]
fn provisioning_cmac_pdus_round_trip() {
    round_trip_file("provisioning-cmac.json", Algorithm::CMAC_AES128);
}

/// MshPRT v1.1 §8.17.2 (HMAC algorithm) provisioning PDUs parse and re-emit byte-exact.
#[test]
fn provisioning_hmac_pdus_round_trip() {
    round_trip_file("provisioning-hmac.json", Algorithm::HMAC_SHA256);
}

/// The decoded fields of the sample Capabilities and Start PDUs.
#[test]
fn sample_capabilities_and_start_fields() {
    let v = load("provisioning-hmac.json");
    let ProvisioningPdu::Capabilities(c) =
        ProvisioningPdu::parse(&hex_field(&v, "capabilities_pdu")).unwrap()
    else {
        panic!()
    };
    assert_eq!(c.num_elements, 1);
    assert_eq!(
        c.algorithms,
        Algorithms::CMAC_AES128 | Algorithms::HMAC_SHA256
    );
    assert_eq!(c.oob_type, OobType::STATIC_OOB_AVAILABLE);
    let ProvisioningPdu::Start(s) = ProvisioningPdu::parse(&hex_field(&v, "start_pdu")).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        s,
        Start {
            algorithm: Algorithm::HMAC_SHA256,
            public_key: StartPublicKey::NoOob,
            auth: StartAuth::StaticOob
        }
    );
    s.check_against(&c).unwrap();
}

/// SLV provisioning PDU encodings, reference §8.7 (python-bluetooth-mesh test_provisioning.py).
#[test]
fn slv_provisioning_encodings() {
    let invite = ProvisioningPdu::Invite(Invite {
        attention_duration: 16,
    });
    assert_eq!(hex::encode(emit(&invite)), "0010");
    assert_eq!(
        ProvisioningPdu::parse(&hex::decode("0010").unwrap()).unwrap(),
        invite
    );

    let caps = ProvisioningPdu::Capabilities(Capabilities {
        num_elements: 1,
        algorithms: Algorithms::CMAC_AES128 | Algorithms::HMAC_SHA256,
        public_key_type: PublicKeyType::OOB_AVAILABLE,
        oob_type: OobType::STATIC_OOB_AVAILABLE,
        output_oob_size: 8,
        output_oob_action: OutputOobActions::BLINK | OutputOobActions::OUTPUT_NUMERIC,
        input_oob_size: 5,
        input_oob_action: InputOobActions::TWIST,
    });
    let caps_hex = "010100030101080009050002";
    // 01 | elements 01 | algorithms 0003 | pk type 01 | oob type 01 | out 08, 0009 | in 05, 0002.
    assert_eq!(hex::encode(emit(&caps)), caps_hex);
    assert_eq!(
        ProvisioningPdu::parse(&hex::decode(caps_hex).unwrap()).unwrap(),
        caps
    );

    let start_none = ProvisioningPdu::Start(Start {
        algorithm: Algorithm::CMAC_AES128,
        public_key: StartPublicKey::Oob,
        auth: StartAuth::NoOob,
    });
    assert_eq!(hex::encode(emit(&start_none)), "020001000000");
    // SLV's `020100000000`: algorithm 0x01 (HMAC), no OOB key, No OOB.
    let start = ProvisioningPdu::parse(&hex::decode("020100000000").unwrap()).unwrap();
    assert_eq!(
        start,
        ProvisioningPdu::Start(Start {
            algorithm: Algorithm::HMAC_SHA256,
            public_key: StartPublicKey::NoOob,
            auth: StartAuth::NoOob,
        })
    );
    assert_eq!(hex::encode(emit(&start)), "020100000000");
    // SLV's `020101020304`: HMAC, OOB public key, Output OOB, action 3 (numeric), size 4.
    let start = ProvisioningPdu::parse(&hex::decode("020101020304").unwrap()).unwrap();
    assert_eq!(
        start,
        ProvisioningPdu::Start(Start {
            algorithm: Algorithm::HMAC_SHA256,
            public_key: StartPublicKey::Oob,
            auth: StartAuth::OutputOob {
                action: meshprov::wire::OutputOobAction::OUTPUT_NUMERIC,
                size: 4
            },
        })
    );
    assert_eq!(hex::encode(emit(&start)), "020101020304");
}

/// SLV bearer control encodings, reference §8.7.
#[test]
fn slv_bearer_control_encodings() {
    let open = GenericProvisioningPdu::BearerControl(BearerControl::LinkOpen {
        uuid: hex::decode("70cf7c9732a345b691494810d2e9cbf4")
            .unwrap()
            .try_into()
            .unwrap(),
    });
    let cases = [
        ("0370cf7c9732a345b691494810d2e9cbf4", open),
        (
            "07",
            GenericProvisioningPdu::BearerControl(BearerControl::LinkAck),
        ),
        (
            "0b00",
            GenericProvisioningPdu::BearerControl(BearerControl::LinkClose {
                reason: LinkCloseReason::SUCCESS,
            }),
        ),
        ("01", GenericProvisioningPdu::TransactionAck),
    ];
    for (hex_str, want) in cases {
        let bytes = hex::decode(hex_str).unwrap();
        assert_eq!(
            GenericProvisioningPdu::parse(&bytes).unwrap(),
            want,
            "{hex_str}"
        );
        assert_eq!(hex::encode(gpp(&want)), hex_str);
    }
}

/// SLV PB-ADV Transaction Start / Continuation examples, reference §2.2.
#[test]
fn slv_transaction_examples() {
    // Invite(att=0): `00 0002 14 | 0000`.
    let segs = segment(&[0x00, 0x00]).unwrap();
    assert_eq!(segs.len(), 1);
    assert_eq!(hex::encode(gpp(&segs[0])), "000002140000");
    // Start (no OOB): `00 0006 64 | 020000000000`.
    let segs = segment(&hex::decode("020000000000").unwrap()).unwrap();
    assert_eq!(hex::encode(gpp(&segs[0])), "00000664020000000000");
    // Data: `04 0022 8b | 07d0bd7f…` + `06 | 23356f…`.
    let data = hex::decode("07d0bd7f4a89a2ff6222af59a90a60ad58acfe3123356f5cec2973e0ec50783b10c7")
        .unwrap();
    let segs = segment(&data).unwrap();
    assert_eq!(segs.len(), 2);
    let first = gpp(&segs[0]);
    assert_eq!(hex::encode(&first[..4]), "0400228b");
    assert_eq!(&first[4..], &data[..20]);
    let second = gpp(&segs[1]);
    assert_eq!(second[0], 0x06);
    assert_eq!(hex::encode(&second[1..4]), "23356f");
    // Random (CMAC): `00 0011 d3 | 068b19…`.
    let mut random = vec![0x06];
    random.extend(hex::decode("8b19ac31d58b124c946209b5db1021b9").unwrap());
    let segs = segment(&random).unwrap();
    assert_eq!(hex::encode(&gpp(&segs[0])[..5]), "000011d306");
}

/// A 65-octet Public Key PDU: 65 = 20 + 23 + 22, so one Transaction Start and two
/// Transaction Continuations (SegN 2), as in the reference's SLV example
/// (`08 0041 10` + `06 …` + `0a …`, §2.2); reassembly checks length and FCS.
#[test]
fn public_key_segmentation_round_trip() {
    let v = load("provisioning-cmac.json");
    let pdu = hex_field(&v, "public_key_pdu_device");
    assert_eq!(pdu.len(), 65);
    let segs = segment(&pdu).unwrap();
    let sizes: Vec<usize> = segs.iter().map(|s| gpp(s).len()).collect();
    // Start: 1 control + 2 TotalLength + 1 FCS + 20 data; continuations: 1 + 23, 1 + 22.
    assert_eq!(sizes, vec![24, 24, 23]);
    assert_eq!(hex::encode(&gpp(&segs[0])[..4]), "08004110");
    assert_eq!(gpp(&segs[1])[0], 0x06);
    assert_eq!(gpp(&segs[2])[0], 0x0a);

    let GenericProvisioningPdu::TransactionStart(start) = &segs[0] else {
        panic!()
    };
    let conts: Vec<TransactionContinuation> = segs[1..]
        .iter()
        .map(|s| match s {
            GenericProvisioningPdu::TransactionContinuation(c) => c.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    // Each segment survives a trip through a PB-ADV payload.
    for (i, s) in segs.iter().enumerate() {
        let adv = PbAdvPdu {
            link_id: 0x1234_5678,
            transaction_number: 0x80,
            pdu: s.clone(),
        };
        let mut bytes = Vec::new();
        adv.emit(&mut bytes);
        assert!(bytes.len() <= 29, "segment {i} fits one advertisement");
        assert_eq!(PbAdvPdu::parse(&bytes).unwrap(), adv);
    }
    // In order and out of order.
    assert_eq!(reassemble(start, &conts).unwrap(), pdu);
    let reversed: Vec<_> = conts.iter().rev().cloned().collect();
    assert_eq!(reassemble(start, &reversed).unwrap(), pdu);
    // A corrupted segment fails the FCS.
    let mut bad = conts.clone();
    bad[0].data[0] ^= 1;
    assert!(matches!(
        reassemble(start, &bad),
        Err(WireError::FcsMismatch { .. })
    ));
    // A missing or duplicate segment is caught.
    assert!(matches!(
        reassemble(start, &conts[..1]),
        Err(WireError::BadSegment { index: 2, .. })
    ));
    let dup = vec![conts[0].clone(), conts[0].clone()];
    assert!(matches!(
        reassemble(start, &dup),
        Err(WireError::BadSegment { index: 1, .. })
    ));
    pb_adv::check_reassembled(start, &pdu).unwrap();
}

/// The largest PDU has SegN 63 and 64 segments; one octet more cannot be segmented.
#[test]
fn segmentation_limits() {
    assert_eq!(seg_n_for(0), None);
    assert_eq!(seg_n_for(1), Some(0));
    assert_eq!(seg_n_for(20), Some(0));
    assert_eq!(seg_n_for(21), Some(1));
    assert_eq!(seg_n_for(43), Some(1));
    assert_eq!(seg_n_for(44), Some(2));
    assert_eq!(seg_n_for(MAX_PDU_LEN), Some(63));
    assert_eq!(seg_n_for(MAX_PDU_LEN + 1), None);
    let big: Vec<u8> = (0..MAX_PDU_LEN).map(|i| i as u8).collect();
    let segs = segment(&big).unwrap();
    assert_eq!(segs.len(), 64);
    let GenericProvisioningPdu::TransactionStart(start) = &segs[0] else {
        panic!()
    };
    assert_eq!(start.seg_n, 63);
    let conts: Vec<_> = segs[1..]
        .iter()
        .map(|s| match s {
            GenericProvisioningPdu::TransactionContinuation(c) => c.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(reassemble(start, &conts).unwrap(), big);
    for s in &segs {
        assert_eq!(GenericProvisioningPdu::parse(&gpp(s)).unwrap(), *s);
    }
    assert!(matches!(
        segment(&vec![0; MAX_PDU_LEN + 1]),
        Err(WireError::CannotSegment { len: 1470 })
    ));
    assert!(matches!(
        segment(&[]),
        Err(WireError::CannotSegment { len: 0 })
    ));
    let _ = TransactionStart {
        seg_n: 0,
        total_length: 1,
        fcs: 0,
        data: vec![0],
    };
}

/// Beacons, MshPRT v1.1 §8.4.3 / §8.4.6: every case of `beacons.json` parses and re-emits.
#[test]
fn beacon_vectors_round_trip() {
    let v = load("beacons.json");
    for case in v["cases"].as_array().unwrap() {
        let bytes = hex_field(case, "beacon");
        let beacon = MeshBeacon::parse(&bytes).unwrap();
        let mut out = Vec::new();
        beacon.emit(&mut out);
        assert_eq!(out, bytes);
        match (case["kind"].as_str().unwrap(), beacon) {
            ("secure_network", MeshBeacon::SecureNetwork(b)) => {
                assert_eq!(b.flags.0, hex_field(case, "flags")[0]);
                assert_eq!(
                    b.iv_index.to_be_bytes().to_vec(),
                    hex_field(case, "iv_index")
                );
                assert_eq!(
                    b.network_id.to_vec(),
                    hex::decode("3ecaff672f673370").unwrap()
                );
                assert_eq!(
                    b.authentication_value.to_vec(),
                    hex::decode("8ea261582f364f6f").unwrap()
                );
            }
            ("private", MeshBeacon::MeshPrivate(b)) => {
                assert_eq!(b.random.to_vec(), hex_field(case, "random"));
            }
            (kind, other) => panic!("{kind}: parsed as {other:?}"),
        }
    }
}

/// Confirmation/Random values are kept with their length.
#[test]
fn prov_value_lengths() {
    assert_eq!(ProvValue::Short([0; 16]).len(), 16);
    assert_eq!(ProvValue::Long([0; 32]).as_bytes().len(), 32);
}

/// Unprovisioned Device beacon, both forms, and the OOB Information bit names (§3.10.2).
#[test]
fn unprovisioned_device_beacon_forms() {
    use meshprov::wire::{OobInformation, UnprovisionedDeviceBeacon};
    let uuid = hex::decode("70cf7c9732a345b691494810d2e9cbf4").unwrap();
    // 19-octet form: OOB info 0x0182 big-endian = URI, CBP, records.
    let mut short = vec![0x00];
    short.extend(&uuid);
    short.extend([0x01, 0x82]);
    let MeshBeacon::UnprovisionedDevice(b) = MeshBeacon::parse(&short).unwrap() else {
        panic!()
    };
    assert_eq!(b.uuid.to_vec(), uuid);
    assert_eq!(b.uri_hash, None);
    assert!(
        b.oob_info
            .contains(OobInformation::CERTIFICATE_BASED_PROVISIONING)
    );
    assert!(b.oob_info.contains(OobInformation::PROVISIONING_RECORDS));
    assert_eq!(
        b.oob_info.names(),
        vec![
            "Electronic / URI",
            "Support for certificate-based provisioning",
            "Support for provisioning records"
        ]
    );
    let mut out = Vec::new();
    MeshBeacon::UnprovisionedDevice(b).emit(&mut out);
    assert_eq!(out, short);
    // 23-octet form; the hash is meaningful only with the URI bit.
    let mut long = short.clone();
    long.extend([0xde, 0xad, 0xbe, 0xef]);
    let MeshBeacon::UnprovisionedDevice(b) = MeshBeacon::parse(&long).unwrap() else {
        panic!()
    };
    assert_eq!(b.meaningful_uri_hash(), Some([0xde, 0xad, 0xbe, 0xef]));
    let no_uri = UnprovisionedDeviceBeacon {
        oob_info: OobInformation::ON_DEVICE,
        ..b
    };
    assert_eq!(no_uri.meaningful_uri_hash(), None);
    // RFU bits 9-10 survive and are not named.
    let rfu = OobInformation(0x0600 | 0x8000);
    assert_eq!(rfu.rfu_bits(), 0x0600);
    assert_eq!(rfu.names(), vec!["On device"]);
    assert_eq!(OobInformation::KNOWN.0, 0xf9ff);
}

/// PB-GATT service data: OOB Information read little-endian, raw kept (reference §1.3).
#[test]
fn pb_gatt_service_data_oob_byte_order() {
    use meshprov::wire::{OobInformation, PbGattServiceData};
    let bytes = hex::decode("2718 70cf7c9732a345b691494810d2e9cbf4 8001".replace(' ', "")).unwrap();
    let sd = PbGattServiceData::parse(&bytes).unwrap();
    assert_eq!(sd.oob_info_raw, [0x80, 0x01]);
    // ESP-IDF / iOS reading: 0x0180 = CBP + records.
    assert_eq!(
        sd.oob_info(),
        OobInformation::CERTIFICATE_BASED_PROVISIONING | OobInformation::PROVISIONING_RECORDS
    );
    // Zephyr reading: 0x8001 = other + on device.
    assert_eq!(
        sd.oob_info_big_endian(),
        OobInformation::OTHER | OobInformation::ON_DEVICE
    );
    let mut out = Vec::new();
    sd.emit(&mut out);
    assert_eq!(out, bytes);
    let mut with_hash = bytes.clone();
    with_hash.extend([1, 2, 3, 4]);
    let sd = PbGattServiceData::parse(&with_hash).unwrap();
    assert_eq!(sd.uri_hash, Some([1, 2, 3, 4]));
    let mut out = Vec::new();
    sd.emit(&mut out);
    assert_eq!(out, with_hash);
}

/// Mesh Proxy service data; Node Identity sample MshPRT v1.1 §8.6.2 (reference §8.3).
#[test]
fn proxy_service_data() {
    use meshprov::wire::ProxyServiceData;
    let cases = [
        (
            "28180100861765aefcc57b34ae608fbbc1f2c6",
            ProxyServiceData::NodeIdentity {
                hash: hex::decode("00861765aefcc57b").unwrap().try_into().unwrap(),
                random: hex::decode("34ae608fbbc1f2c6").unwrap().try_into().unwrap(),
            },
        ),
        (
            "2818003ecaff672f673370",
            ProxyServiceData::NetworkId(
                hex::decode("3ecaff672f673370").unwrap().try_into().unwrap(),
            ),
        ),
        (
            "2818020001020304050607a0a1a2a3a4a5a6a7",
            ProxyServiceData::PrivateNetworkIdentity {
                hash: [0, 1, 2, 3, 4, 5, 6, 7],
                random: [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7],
            },
        ),
        (
            "2818030001020304050607a0a1a2a3a4a5a6a7",
            ProxyServiceData::PrivateNodeIdentity {
                hash: [0, 1, 2, 3, 4, 5, 6, 7],
                random: [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7],
            },
        ),
    ];
    for (hex_str, want) in cases {
        let bytes = hex::decode(hex_str).unwrap();
        assert_eq!(ProxyServiceData::parse(&bytes).unwrap(), want);
        let mut out = Vec::new();
        want.emit(&mut out);
        assert_eq!(out, bytes);
    }
}

/// Proxy PDU header: SAR and message type, unknown types survive (§6.3.1).
#[test]
fn proxy_pdu_header() {
    use meshprov::wire::{ProxyMessageType, ProxyPdu, Sar};
    let cases = [
        (0x03, Sar::Complete, ProxyMessageType::PROVISIONING_PDU),
        (0x40, Sar::First, ProxyMessageType::NETWORK_PDU),
        (0x81, Sar::Continuation, ProxyMessageType::MESH_BEACON),
        (0xc2, Sar::Last, ProxyMessageType::PROXY_CONFIGURATION),
        (0x3f, Sar::Complete, ProxyMessageType(0x3f)),
    ];
    for (header, sar, ty) in cases {
        let bytes = [header, 0xaa, 0xbb];
        let pdu = ProxyPdu::parse(&bytes).unwrap();
        assert_eq!((pdu.sar, pdu.message_type), (sar, ty));
        assert_eq!(pdu.data, vec![0xaa, 0xbb]);
        let mut out = Vec::new();
        pdu.emit(&mut out);
        assert_eq!(out, bytes);
    }
    assert!(!ProxyMessageType(0x04).is_known());
    assert_eq!(ProxyMessageType(0x04).to_string(), "RFU (0x04)");
}

/// Named constants of the wire enums (§5.4.1.10 error codes, §5.3.1.4.3 close reasons).
#[test]
fn wire_enum_names() {
    use meshprov::wire::{FailedCode, PduType};
    let names: Vec<_> = (0u8..=0x0a).map(|c| FailedCode(c).name()).collect();
    assert_eq!(names[0x01], Some("Invalid PDU"));
    assert_eq!(names[0x09], Some("Invalid Data"));
    assert_eq!(names[0x0a], None);
    assert_eq!(FailedCode::CANNOT_ASSIGN_ADDRESSES.0, 0x08);
    assert_eq!(PduType::RECORDS_LIST.0, 0x0d);
    assert!(!PduType(0x0e).is_known());
    assert_eq!(LinkCloseReason::TIMEOUT.0, 0x01);
    assert_eq!(LinkCloseReason::FAIL.to_string(), "Fail (0x02)");
}
