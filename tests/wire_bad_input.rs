//! Failing cases for the `wire` layer: every prohibited value, bad length and RFU field, with
//! the exact error expected and (for provisioning PDUs) the Provisioning Failed code,
//! MshPRT v1.1 §5.4.1, §5.4.4, §5.3.1, §3.10, §7.

use meshprov::wire::{
    FailedCode, GenericProvisioningPdu, MeshBeacon, PbAdvPdu, PbGattServiceData, ProvisioningPdu,
    ProxyPdu, ProxyServiceData, WireError,
};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn prohibited(
    what: &'static str,
    field: &'static str,
    value: u32,
    reason: &'static str,
) -> WireError {
    WireError::Prohibited {
        what,
        field,
        value,
        reason,
    }
}

fn rfu(what: &'static str, field: &'static str, bits: u16) -> WireError {
    WireError::RfuBitsSet { what, field, bits }
}

const CAPS: &str = "Provisioning Capabilities";
const START: &str = "Provisioning Start";

fn bad_len(what: &'static str, expected: usize, actual: usize) -> WireError {
    WireError::BadLength {
        what,
        expected,
        actual,
    }
}

/// Provisioning PDUs: (input, expected error, expected Failed code).
#[test]
fn provisioning_pdu_failures() {
    let f = FailedCode::INVALID_FORMAT;
    let p = FailedCode::INVALID_PDU;
    let cases: Vec<(&str, WireError, FailedCode)> = vec![
        // Empty input and the type octet.
        (
            "",
            WireError::TooShort {
                what: "Provisioning PDU",
                min: 1,
                actual: 0,
            },
            f,
        ),
        ("0e", WireError::UnknownPduType(0x0e), p),
        ("3f", WireError::UnknownPduType(0x3f), p),
        (
            "4000",
            WireError::NonZeroPadding {
                what: "Provisioning PDU type octet",
                octet: 0x40,
            },
            p,
        ),
        (
            "88",
            WireError::NonZeroPadding {
                what: "Provisioning PDU type octet",
                octet: 0x88,
            },
            p,
        ),
        // Lengths.
        ("00", bad_len("Provisioning Invite", 1, 0), f),
        ("000000", bad_len("Provisioning Invite", 1, 2), f),
        ("01 0100010000000000000000 00", bad_len(CAPS, 11, 12), f),
        ("01 01000100000000000000", bad_len(CAPS, 11, 10), f),
        ("02 0000000000 00", bad_len(START, 5, 6), f),
        ("02 00000000", bad_len(START, 5, 4), f),
        ("03 00", bad_len("Provisioning Public Key", 64, 1), f),
        ("0400", bad_len("Provisioning Input Complete", 0, 1), f),
        (
            "05 000102030405060708090a0b0c0d0e",
            WireError::IllegalLength {
                what: "Provisioning Confirmation",
                allowed: "16 or 32",
                actual: 15,
            },
            f,
        ),
        (
            "06 000102030405060708090a0b0c0d0e0f10",
            WireError::IllegalLength {
                what: "Provisioning Random",
                allowed: "16 or 32",
                actual: 17,
            },
            f,
        ),
        ("07 00", bad_len("Provisioning Data", 33, 1), f),
        ("0800", bad_len("Provisioning Complete", 0, 1), f),
        ("09", bad_len("Provisioning Failed", 1, 0), f),
        ("090101", bad_len("Provisioning Failed", 1, 2), f),
        (
            "0a 0001 0000",
            bad_len("Provisioning Record Request", 6, 4),
            f,
        ),
        (
            "0b 00 0001 0000 00",
            WireError::TooShort {
                what: "Provisioning Record Response",
                min: 7,
                actual: 6,
            },
            f,
        ),
        ("0c00", bad_len("Provisioning Records Get", 0, 1), f),
        (
            "0d 00",
            WireError::TooShort {
                what: "Provisioning Records List",
                min: 2,
                actual: 1,
            },
            f,
        ),
        (
            "0d 0000 000100",
            WireError::IllegalLength {
                what: "Provisioning Records List",
                allowed: "2 + 2 per record ID",
                actual: 5,
            },
            f,
        ),
        // Capabilities prohibited values (§5.4.1.2).
        (
            "01 00 0001 00 00 00 0000 00 0000",
            prohibited(CAPS, "Number of Elements", 0, "0 is prohibited"),
            f,
        ),
        (
            "01 01 0000 00 00 00 0000 00 0000",
            prohibited(CAPS, "Algorithms", 0, "no known algorithm is supported"),
            f,
        ),
        (
            "01 01 0004 00 00 00 0000 00 0000",
            prohibited(CAPS, "Algorithms", 4, "no known algorithm is supported"),
            f,
        ),
        (
            "01 01 0001 02 00 00 0000 00 0000",
            rfu(CAPS, "Public Key Type", 0x02),
            f,
        ),
        (
            "01 01 0001 81 00 00 0000 00 0000",
            rfu(CAPS, "Public Key Type", 0x80),
            f,
        ),
        (
            "01 01 0001 00 04 00 0000 00 0000",
            rfu(CAPS, "OOB Type", 0x04),
            f,
        ),
        (
            "01 01 0001 00 00 21 0001 00 0000",
            prohibited(CAPS, "Output OOB Size", 33, "sizes above 32 are RFU"),
            f,
        ),
        (
            "01 01 0001 00 00 08 0020 00 0000",
            rfu(CAPS, "Output OOB Action", 0x0020),
            f,
        ),
        (
            "01 01 0001 00 00 08 8001 00 0000",
            rfu(CAPS, "Output OOB Action", 0x8000),
            f,
        ),
        (
            "01 01 0001 00 00 00 0000 ff 0001",
            prohibited(CAPS, "Input OOB Size", 255, "sizes above 32 are RFU"),
            f,
        ),
        (
            "01 01 0001 00 00 00 0000 04 0010",
            rfu(CAPS, "Input OOB Action", 0x0010),
            f,
        ),
        (
            "01 01 0003 00 03 00 0000 00 0000",
            prohibited(
                CAPS,
                "OOB Type",
                3,
                "only-OOB-authenticated devices shall not support the CMAC algorithm",
            ),
            f,
        ),
        (
            "01 01 0002 00 02 00 0000 00 0000",
            prohibited(
                CAPS,
                "OOB Type",
                2,
                "only-OOB-authenticated devices shall support static, output or input OOB",
            ),
            f,
        ),
        // Start prohibited values (§5.4.1.3).
        (
            "02 02 00 00 00 00",
            prohibited(START, "Algorithm", 2, "RFU algorithm"),
            f,
        ),
        (
            "02 ff 00 00 00 00",
            prohibited(START, "Algorithm", 0xff, "RFU algorithm"),
            f,
        ),
        (
            "02 00 02 00 00 00",
            prohibited(START, "Public Key", 2, "only 0x00 and 0x01 are allowed"),
            f,
        ),
        (
            "02 00 00 04 00 00",
            prohibited(
                START,
                "Authentication Method",
                4,
                "0x04..=0xff are prohibited",
            ),
            f,
        ),
        (
            "02 00 00 00 01 00",
            prohibited(
                START,
                "Authentication Action",
                1,
                "must be 0 for No OOB / Static OOB",
            ),
            f,
        ),
        (
            "02 00 00 01 00 01",
            prohibited(
                START,
                "Authentication Size",
                1,
                "must be 0 for No OOB / Static OOB",
            ),
            f,
        ),
        (
            "02 00 00 02 05 04",
            prohibited(START, "Authentication Action", 5, "RFU output OOB action"),
            f,
        ),
        (
            "02 00 00 03 04 04",
            prohibited(START, "Authentication Action", 4, "RFU input OOB action"),
            f,
        ),
        (
            "02 00 00 02 03 00",
            prohibited(
                START,
                "Authentication Size",
                0,
                "must be 1..=32 for Output/Input OOB",
            ),
            f,
        ),
        (
            "02 00 00 03 02 21",
            prohibited(
                START,
                "Authentication Size",
                33,
                "must be 1..=32 for Output/Input OOB",
            ),
            f,
        ),
        // Failed, records (§5.4.1.10–14).
        (
            "0900",
            prohibited("Provisioning Failed", "Error Code", 0, "0x00 is prohibited"),
            f,
        ),
        (
            "0a 0001 0000 0000",
            prohibited(
                "Provisioning Record Request",
                "Fragment Maximum Size",
                0,
                "a zero-size fragment is prohibited",
            ),
            f,
        ),
        (
            "0b 00 0001 0004 0005 aabb",
            prohibited(
                "Provisioning Record Response",
                "Fragment Offset",
                4,
                "fragment extends past Total Length",
            ),
            f,
        ),
    ];
    for (input, want, code) in cases {
        let got = ProvisioningPdu::parse(&h(input));
        assert_eq!(got, Err(want.clone()), "input {input}");
        assert_eq!(want.failed_code(), code, "failed code for {input}");
        // The message names the problem.
        assert!(!want.to_string().is_empty());
    }
}

/// Cases that look odd but are legal, so that the table above does not over-reject.
#[test]
fn provisioning_pdu_edge_cases_accepted() {
    for input in [
        // Algorithms RFU bit 2 is tolerated next to a known algorithm.
        "01 01 0005 00 00 00 0000 00 0000",
        // OOB size 32 (ES-27446) and all action bits.
        "01 ff 0003 01 01 20 001f 20 000f",
        // Only-OOB-authenticated device with HMAC and static OOB.
        "01 01 0002 00 03 00 0000 00 0000",
        "02 01 01 02 04 20",
        "02 00 00 03 03 01",
        // RFU Failed code survives.
        "09 0a",
        "09 ff",
        // Record Response with non-success status and data past total length is not checked.
        "0b 01 0001 0004 0000 aabb",
        "0b 00 0001 0000 0002 aabb",
        "0d 0000",
        "0d ffff 0000 0001 0013",
    ] {
        let bytes = h(input);
        let pdu = ProvisioningPdu::parse(&bytes).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(pdu.to_vec(), bytes, "{input}");
    }
}

/// Start against Capabilities (§5.4.1.3 "shall be advertised").
#[test]
fn start_must_match_capabilities() {
    let ProvisioningPdu::Capabilities(caps) =
        ProvisioningPdu::parse(&h("01 01 0001 00 00 04 0008 00 0000")).unwrap()
    else {
        panic!()
    };
    let start = |s: &str| match ProvisioningPdu::parse(&h(s)).unwrap() {
        ProvisioningPdu::Start(s) => s,
        _ => unreachable!(),
    };
    start("02 00 00 00 00 00").check_against(&caps).unwrap();
    start("02 00 00 02 03 04").check_against(&caps).unwrap();
    for (s, field) in [
        ("02 01 00 00 00 00", "Algorithm"),
        ("02 00 01 00 00 00", "Public Key"),
        ("02 00 00 01 00 00", "Authentication Method"),
        ("02 00 00 02 00 04", "Authentication Action"),
        ("02 00 00 02 03 05", "Authentication Size"),
        ("02 00 00 03 00 01", "Authentication Action"),
    ] {
        match start(s).check_against(&caps) {
            Err(WireError::Prohibited { field: got, .. }) => assert_eq!(got, field, "{s}"),
            other => panic!("{s}: {other:?}"),
        }
    }
}

/// Generic Provisioning PDUs and PB-ADV (§5.2.1, §5.3.1).
#[test]
fn pb_adv_failures() {
    let cases: Vec<(&str, WireError)> = vec![
        (
            "",
            WireError::TooShort {
                what: "Generic Provisioning PDU",
                min: 1,
                actual: 0,
            },
        ),
        // Transaction Start.
        (
            "00 00",
            WireError::TooShort {
                what: "Transaction Start",
                min: 4,
                actual: 2,
            },
        ),
        (
            "00 0001",
            WireError::TooShort {
                what: "Transaction Start",
                min: 4,
                actual: 3,
            },
        ),
        (
            "00 0000 14",
            prohibited("Transaction Start", "TotalLength", 0, "must be 1..=1469"),
        ),
        (
            "00 05be 00",
            prohibited("Transaction Start", "TotalLength", 1470, "must be 1..=1469"),
        ),
        (
            "04 0002 14 0000",
            WireError::SegNMismatch {
                seg_n: 1,
                total_length: 2,
                expected: 0,
            },
        ),
        // Zephyr's SegN for a 43-octet PDU (reference §2.1) is rejected.
        (
            "08 002b 00 000102030405060708090a0b0c0d0e0f10111213",
            WireError::SegNMismatch {
                seg_n: 2,
                total_length: 43,
                expected: 1,
            },
        ),
        ("00 0002 14 00", bad_len("Transaction Start data", 2, 1)),
        ("00 0002 14 000000", bad_len("Transaction Start data", 2, 3)),
        (
            "04 0015 00 000102030405060708090a0b0c0d0e0f10111213 14",
            bad_len("Transaction Start data", 20, 21),
        ),
        // Transaction Ack.
        (
            "05",
            WireError::NonZeroPadding {
                what: "Transaction Acknowledgment",
                octet: 0x05,
            },
        ),
        ("01 00", bad_len("Transaction Acknowledgment", 1, 2)),
        // Transaction Continuation.
        (
            "02 00",
            prohibited(
                "Transaction Continuation",
                "Segment Index",
                0,
                "index 0 is the Transaction Start",
            ),
        ),
        (
            "06",
            WireError::TooShort {
                what: "Transaction Continuation",
                min: 2,
                actual: 1,
            },
        ),
        (
            "06 000102030405060708090a0b0c0d0e0f1011121314151617",
            WireError::TooLong {
                what: "Transaction Continuation data",
                max: 23,
                actual: 24,
            },
        ),
        // Bearer control.
        ("0f", WireError::UnknownBearerOpcode(3)),
        ("ff", WireError::UnknownBearerOpcode(0x3f)),
        (
            "03 70cf7c9732a345b691494810d2e9cb",
            bad_len("Link Open", 17, 16),
        ),
        (
            "03 70cf7c9732a345b691494810d2e9cbf400",
            bad_len("Link Open", 17, 18),
        ),
        ("07 00", bad_len("Link ACK", 1, 2)),
        ("0b", bad_len("Link Close", 2, 1)),
        ("0b 0000", bad_len("Link Close", 2, 3)),
    ];
    for (input, want) in cases {
        assert_eq!(
            GenericProvisioningPdu::parse(&h(input)),
            Err(want),
            "input {input}"
        );
    }
    // The PB-ADV header.
    assert_eq!(
        PbAdvPdu::parse(&h("0000000100")),
        Err(WireError::TooShort {
            what: "PB-ADV PDU",
            min: 6,
            actual: 5
        })
    );
    assert_eq!(
        PbAdvPdu::parse(&h("00000001 00 0f")),
        Err(WireError::UnknownBearerOpcode(3))
    );
    // RFU Link Close reasons survive.
    let adv = PbAdvPdu::parse(&h("00000001 00 0b07")).unwrap();
    let mut out = Vec::new();
    adv.emit(&mut out);
    assert_eq!(out, h("00000001 00 0b07"));
}

/// Beacons and service data (§3.10, §7.1.2.2, §7.2.2.2).
#[test]
fn beacon_failures() {
    let udb = "Unprovisioned Device beacon";
    let cases: Vec<(&str, WireError)> = vec![
        (
            "",
            WireError::TooShort {
                what: "mesh beacon",
                min: 1,
                actual: 0,
            },
        ),
        ("03 00", WireError::UnknownBeaconType(3)),
        (
            "00 00112233445566778899aabbccddeeff 00",
            WireError::IllegalLength {
                what: udb,
                allowed: "18 or 22 after the beacon type",
                actual: 17,
            },
        ),
        (
            "00 00112233445566778899aabbccddeeff 0000 000000",
            WireError::IllegalLength {
                what: udb,
                allowed: "18 or 22 after the beacon type",
                actual: 21,
            },
        ),
        (
            "01 003ecaff672f673370123456788ea261582f364f",
            bad_len("Secure Network beacon", 21, 20),
        ),
        (
            "01 003ecaff672f673370123456788ea261582f364f6f00",
            bad_len("Secure Network beacon", 21, 22),
        ),
        (
            "02 435f18f85cf78a3121f58478a561e488e7cbf3174f022a5147",
            bad_len("Mesh Private beacon", 26, 25),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(MeshBeacon::parse(&h(input)), Err(want), "input {input}");
    }
    let gatt = "PB-GATT service data";
    assert_eq!(
        PbGattServiceData::parse(&h("2818 00112233445566778899aabbccddeeff 0000")),
        Err(WireError::WrongServiceUuid {
            expected: 0x1827,
            actual: 0x1828
        })
    );
    assert_eq!(
        PbGattServiceData::parse(&h("27")),
        Err(WireError::TooShort {
            what: gatt,
            min: 2,
            actual: 1
        })
    );
    assert_eq!(
        PbGattServiceData::parse(&h("2718 00112233445566778899aabbccddeeff 00")),
        Err(WireError::IllegalLength {
            what: gatt,
            allowed: "18 or 22 after the service UUID",
            actual: 17
        })
    );
    assert_eq!(
        ProxyServiceData::parse(&h("2718 00 3ecaff672f673370")),
        Err(WireError::WrongServiceUuid {
            expected: 0x1828,
            actual: 0x1827
        })
    );
    assert_eq!(
        ProxyServiceData::parse(&h("2818")),
        Err(WireError::TooShort {
            what: "Mesh Proxy service data",
            min: 3,
            actual: 2
        })
    );
    assert_eq!(
        ProxyServiceData::parse(&h("2818 04 3ecaff672f673370")),
        Err(WireError::UnknownIdentificationType(4))
    );
    assert_eq!(
        ProxyServiceData::parse(&h("2818 00 3ecaff672f6733")),
        Err(bad_len("Mesh Proxy Network ID", 8, 7))
    );
    assert_eq!(
        ProxyServiceData::parse(&h("2818 01 00861765aefcc57b34ae608fbbc1f2")),
        Err(bad_len("Mesh Proxy identity hash and random", 16, 15))
    );
    assert_eq!(
        ProxyPdu::parse(&[]),
        Err(WireError::TooShort {
            what: "Proxy PDU",
            min: 1,
            actual: 0
        })
    );
}
