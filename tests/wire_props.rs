//! Property tests for the `wire` layer: no parser panics on any input, whatever parses
//! re-emits to the same bytes, and parse(emit(x)) == x for generated legal values.

use meshprov::wire::pb_adv::{MAX_PDU_LEN, check_reassembled};
use meshprov::wire::{
    Algorithm, Algorithms, BeaconFlags, BearerControl, Capabilities, Data, FailedCode,
    GenericProvisioningPdu, InputOobAction, InputOobActions, Invite, LinkCloseReason, MeshBeacon,
    MeshPrivateBeacon, OobInformation, OobType, OutputOobAction, OutputOobActions, PbAdvPdu,
    PbGattServiceData, ProvValue, ProvisioningPdu, ProxyConfigMessage, ProxyMessageType, ProxyPdu,
    ProxyServiceData, PublicKey, PublicKeyType, RecordId, RecordRequest, RecordResponse,
    RecordStatus, RecordsList, Sar, SecureNetworkBeacon, Start, StartAuth, StartPublicKey,
    TransactionContinuation, UnprovisionedDeviceBeacon, reassemble, segment,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// Runs every parser on `bytes`; whatever parses must re-emit to exactly `bytes`.
fn all_parsers(bytes: &[u8]) {
    fn check<T: std::fmt::Debug>(
        bytes: &[u8],
        parsed: Result<T, meshprov::wire::WireError>,
        emit: impl Fn(&T, &mut Vec<u8>),
    ) {
        if let Ok(value) = parsed {
            let mut out = Vec::new();
            emit(&value, &mut out);
            assert_eq!(out, bytes, "{value:?} re-emits differently");
        } else if let Err(e) = parsed {
            // Every error renders a message and maps to a Failed code.
            assert!(!e.to_string().is_empty());
            let _ = e.failed_code();
        }
    }
    check(bytes, ProvisioningPdu::parse(bytes), ProvisioningPdu::emit);
    for alg in [0u8, 1, 2] {
        check(
            bytes,
            ProvisioningPdu::parse_with_algorithm(bytes, Algorithm(alg)),
            ProvisioningPdu::emit,
        );
    }
    check(
        bytes,
        GenericProvisioningPdu::parse(bytes),
        GenericProvisioningPdu::emit,
    );
    check(bytes, PbAdvPdu::parse(bytes), PbAdvPdu::emit);
    check(bytes, MeshBeacon::parse(bytes), MeshBeacon::emit);
    check(
        bytes,
        PbGattServiceData::parse(bytes),
        PbGattServiceData::emit,
    );
    check(
        bytes,
        ProxyServiceData::parse(bytes),
        ProxyServiceData::emit,
    );
    check(bytes, ProxyPdu::parse(bytes), ProxyPdu::emit);
    check(
        bytes,
        ProxyConfigMessage::parse(bytes),
        ProxyConfigMessage::emit,
    );
    if let Ok(b) = Capabilities::parse_params(bytes) {
        assert_eq!(b.params().to_vec(), bytes);
    }
    if let Ok(s) = Start::parse_params(bytes) {
        assert_eq!(s.params().to_vec(), bytes);
    }
}

/// Exhaustive: every input of 0, 1 and 2 octets.
#[test]
fn exhaustive_short_inputs() {
    all_parsers(&[]);
    for a in 0..=255u8 {
        all_parsers(&[a]);
        for b in 0..=255u8 {
            all_parsers(&[a, b]);
        }
    }
}

fn arb_capabilities() -> impl Strategy<Value = Capabilities> {
    (
        1..=255u8,
        any::<u16>().prop_filter("a known algorithm", |a| a & 0b11 != 0),
        0..=1u8,
        0..=3u8,
        0..=32u8,
        0..=0x1fu16,
        0..=32u8,
        0..=0x0fu16,
    )
        .prop_map(|(n, alg, pk, oob, os, oa, is, ia)| Capabilities {
            num_elements: n,
            algorithms: Algorithms(alg),
            public_key_type: PublicKeyType(pk),
            oob_type: OobType(oob),
            output_oob_size: os,
            output_oob_action: OutputOobActions(oa),
            input_oob_size: is,
            input_oob_action: InputOobActions(ia),
        })
        .prop_filter("1.1 only-OOB rule", |c| {
            !c.oob_type.contains(OobType::ONLY_OOB_AUTHENTICATED)
                || (!c.algorithms.contains(Algorithms::CMAC_AES128)
                    && (c.oob_type.contains(OobType::STATIC_OOB_AVAILABLE)
                        || c.output_oob_size != 0
                        || c.input_oob_size != 0))
        })
}

fn arb_start() -> impl Strategy<Value = Start> {
    let auth = prop_oneof![
        Just(StartAuth::NoOob),
        Just(StartAuth::StaticOob),
        (0..=4u8, 1..=32u8).prop_map(|(a, size)| StartAuth::OutputOob {
            action: OutputOobAction(a),
            size
        }),
        (0..=3u8, 1..=32u8).prop_map(|(a, size)| StartAuth::InputOob {
            action: InputOobAction(a),
            size
        }),
    ];
    (0..=1u8, any::<bool>(), auth).prop_map(|(alg, oob_key, auth)| Start {
        algorithm: Algorithm(alg),
        public_key: if oob_key {
            StartPublicKey::Oob
        } else {
            StartPublicKey::NoOob
        },
        auth,
    })
}

fn arb_value() -> impl Strategy<Value = ProvValue> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(ProvValue::Short),
        any::<[u8; 32]>().prop_map(ProvValue::Long),
    ]
}

fn arb_prov_pdu() -> impl Strategy<Value = ProvisioningPdu> {
    prop_oneof![
        any::<u8>().prop_map(|a| ProvisioningPdu::Invite(Invite {
            attention_duration: a
        })),
        arb_capabilities().prop_map(ProvisioningPdu::Capabilities),
        arb_start().prop_map(ProvisioningPdu::Start),
        (any::<[u8; 32]>(), any::<[u8; 32]>())
            .prop_map(|(x, y)| ProvisioningPdu::PublicKey(PublicKey { x, y })),
        Just(ProvisioningPdu::InputComplete),
        arb_value().prop_map(ProvisioningPdu::Confirmation),
        arb_value().prop_map(ProvisioningPdu::Random),
        (any::<[u8; 25]>(), any::<[u8; 8]>()).prop_map(|(encrypted_data, mic)| {
            ProvisioningPdu::Data(Data {
                encrypted_data,
                mic,
            })
        }),
        Just(ProvisioningPdu::Complete),
        (1..=255u8).prop_map(|c| ProvisioningPdu::Failed(FailedCode(c))),
        (any::<u16>(), any::<u16>(), 1..=u16::MAX).prop_map(|(id, off, max)| {
            ProvisioningPdu::RecordRequest(RecordRequest {
                record_id: RecordId(id),
                fragment_offset: off,
                fragment_max_size: max,
            })
        }),
        (
            any::<u8>(),
            any::<u16>(),
            0..2000u16,
            vec(any::<u8>(), 0..60),
            0..2000u16
        )
            .prop_map(|(status, id, off, data, extra)| {
                let total = off + data.len() as u16 + extra;
                ProvisioningPdu::RecordResponse(RecordResponse {
                    status: RecordStatus(status),
                    record_id: RecordId(id),
                    fragment_offset: off,
                    total_length: total,
                    data,
                })
            }),
        Just(ProvisioningPdu::RecordsGet),
        (any::<u16>(), vec(any::<u16>(), 0..20)).prop_map(|(ext, ids)| {
            ProvisioningPdu::RecordsList(RecordsList {
                provisioning_extensions: ext,
                record_ids: ids.into_iter().map(RecordId).collect(),
            })
        }),
    ]
}

fn arb_beacon() -> impl Strategy<Value = MeshBeacon> {
    prop_oneof![
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            proptest::option::of(any::<[u8; 4]>())
        )
            .prop_map(|(uuid, oob, uri_hash)| MeshBeacon::UnprovisionedDevice(
                UnprovisionedDeviceBeacon {
                    uuid,
                    oob_info: OobInformation(oob),
                    uri_hash,
                }
            )),
        (
            any::<u8>(),
            any::<[u8; 8]>(),
            any::<u32>(),
            any::<[u8; 8]>()
        )
            .prop_map(|(flags, network_id, iv_index, authentication_value)| {
                MeshBeacon::SecureNetwork(SecureNetworkBeacon {
                    flags: BeaconFlags(flags),
                    network_id,
                    iv_index,
                    authentication_value,
                })
            }),
        (any::<[u8; 13]>(), any::<[u8; 5]>(), any::<[u8; 8]>()).prop_map(
            |(random, obfuscated_data, authentication_tag)| MeshBeacon::MeshPrivate(
                MeshPrivateBeacon {
                    random,
                    obfuscated_data,
                    authentication_tag,
                }
            )
        ),
    ]
}

fn arb_proxy_service_data() -> impl Strategy<Value = ProxyServiceData> {
    prop_oneof![
        any::<[u8; 8]>().prop_map(ProxyServiceData::NetworkId),
        (0..3u8, any::<[u8; 8]>(), any::<[u8; 8]>()).prop_map(|(t, hash, random)| match t {
            0 => ProxyServiceData::NodeIdentity { hash, random },
            1 => ProxyServiceData::PrivateNetworkIdentity { hash, random },
            _ => ProxyServiceData::PrivateNodeIdentity { hash, random },
        }),
    ]
}

fn arb_control() -> impl Strategy<Value = GenericProvisioningPdu> {
    prop_oneof![
        Just(GenericProvisioningPdu::TransactionAck),
        any::<[u8; 16]>().prop_map(|uuid| GenericProvisioningPdu::BearerControl(
            BearerControl::LinkOpen { uuid }
        )),
        Just(GenericProvisioningPdu::BearerControl(
            BearerControl::LinkAck
        )),
        any::<u8>().prop_map(
            |r| GenericProvisioningPdu::BearerControl(BearerControl::LinkClose {
                reason: LinkCloseReason(r)
            })
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never make a parser panic, and what parses re-emits identically.
    #[test]
    fn parsers_never_panic(bytes in vec(any::<u8>(), 0..100)) {
        all_parsers(&bytes);
    }

    /// Same, with a plausible first octet so that the length checks are reached.
    #[test]
    fn parsers_never_panic_typed(first in 0u8..0x10, rest in vec(any::<u8>(), 0..80)) {
        let mut bytes = vec![first];
        bytes.extend(rest);
        all_parsers(&bytes);
    }

    /// Same, for service data with the right UUIDs and for PB-ADV payloads.
    #[test]
    fn parsers_never_panic_prefixed(
        prefix in prop_oneof![
            Just(vec![0x27u8, 0x18]),
            Just(vec![0x28u8, 0x18]),
            vec(any::<u8>(), 5..=5),
        ],
        rest in vec(any::<u8>(), 0..40),
    ) {
        let mut bytes = prefix;
        bytes.extend(rest);
        all_parsers(&bytes);
    }

    /// parse(emit(x)) == x for legal provisioning PDUs.
    #[test]
    fn provisioning_round_trip(pdu in arb_prov_pdu()) {
        let bytes = pdu.to_vec();
        prop_assert_eq!(ProvisioningPdu::parse(&bytes), Ok(pdu));
    }

    /// parse(emit(x)) == x for beacons and service data.
    #[test]
    fn beacon_round_trip(
        beacon in arb_beacon(),
        proxy in arb_proxy_service_data(),
        uuid in any::<[u8; 16]>(),
        oob in any::<[u8; 2]>(),
        uri_hash in proptest::option::of(any::<[u8; 4]>()),
    ) {
        let mut out = Vec::new();
        beacon.emit(&mut out);
        prop_assert_eq!(MeshBeacon::parse(&out), Ok(beacon));
        let mut out = Vec::new();
        proxy.emit(&mut out);
        prop_assert_eq!(ProxyServiceData::parse(&out), Ok(proxy));
        let gatt = PbGattServiceData { uuid, oob_info_raw: oob, uri_hash };
        let mut out = Vec::new();
        gatt.emit(&mut out);
        prop_assert_eq!(PbGattServiceData::parse(&out), Ok(gatt));
    }

    /// parse(emit(x)) == x for Proxy PDUs.
    #[test]
    fn proxy_round_trip(sar in 0..4u8, ty in 0..0x40u8, data in vec(any::<u8>(), 0..30)) {
        let pdu = ProxyPdu { sar: Sar::from_bits(sar), message_type: ProxyMessageType(ty), data };
        let mut out = Vec::new();
        pdu.emit(&mut out);
        prop_assert_eq!(ProxyPdu::parse(&out), Ok(pdu));
    }

    /// Any PDU of 1..=1469 octets segments into PDUs that fit PB-ADV, parse back, and
    /// reassemble (in any order) to the original with a good FCS.
    #[test]
    fn segmentation_round_trip(
        pdu in vec(any::<u8>(), 1..=MAX_PDU_LEN),
        link_id in any::<u32>(),
        xact in any::<u8>(),
        reverse in any::<bool>(),
    ) {
        let segs = segment(&pdu).unwrap();
        let mut conts: Vec<TransactionContinuation> = Vec::new();
        let mut start = None;
        for s in &segs {
            let adv = PbAdvPdu { link_id, transaction_number: xact, pdu: s.clone() };
            let mut out = Vec::new();
            adv.emit(&mut out);
            prop_assert!(out.len() <= 29);
            prop_assert_eq!(PbAdvPdu::parse(&out), Ok(adv));
            match s {
                GenericProvisioningPdu::TransactionStart(t) => start = Some(t.clone()),
                GenericProvisioningPdu::TransactionContinuation(c) => conts.push(c.clone()),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        let start = start.unwrap();
        prop_assert_eq!(usize::from(start.seg_n), conts.len());
        if reverse {
            conts.reverse();
        }
        prop_assert_eq!(reassemble(&start, &conts), Ok(pdu.clone()));
        prop_assert_eq!(check_reassembled(&start, &pdu), Ok(()));
    }

    /// parse(emit(x)) == x for bearer control PDUs and acks inside PB-ADV.
    #[test]
    fn control_round_trip(pdu in arb_control(), link_id in any::<u32>()) {
        let adv = PbAdvPdu { link_id, transaction_number: 0, pdu };
        let mut out = Vec::new();
        adv.emit(&mut out);
        prop_assert_eq!(PbAdvPdu::parse(&out), Ok(adv));
    }
}
