//! Every case of the specification's sample data in `../shared/vectors/*.json`, reproduced
//! byte for byte, plus the failing cases next to each (flipped MIC bits, wrong AuthValue,
//! wrong keys). Sources are named in each file's `source` field and in the test names.

use mesh_crypto::access::{self, AccessKey, AccessParams};
use mesh_crypto::beacon::{self, BeaconState};
use mesh_crypto::ccm::MicLen;
use mesh_crypto::ecdh::{KeyPair, PublicKey};
use mesh_crypto::network::{self, NetworkHeader};
use mesh_crypto::provisioning::{
    self as prov, Algorithm, Confirmation, ConfirmationContext, ProvRandom,
};
use mesh_crypto::toolbox;
use mesh_crypto::{AppKey, AuthValue, CryptoError, DevKey, NetKey, ProvisioningDataPlain, nonce};
use serde_json::Value;

/// The shared directory: `$MESHPROV_SHARED`, or `../shared` beside the workspace root. A
/// missing file fails the test: these tests must never pass by reading nothing.
fn vectors(name: &str) -> Value {
    let dir = std::env::var("MESHPROV_SHARED")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared").to_string());
    let path = format!("{dir}/vectors/{name}");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read sample data {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).expect("hex")
}

fn h16(v: &Value) -> [u8; 16] {
    h(v).try_into().expect("16 bytes")
}

fn u32hex(v: &Value) -> u32 {
    u32::from_str_radix(v.as_str().expect("str"), 16).expect("hex u32")
}

fn net_key(v: &Value) -> NetKey {
    NetKey::from_hex(v.as_str().expect("str")).expect("net key")
}

#[test]
fn toolbox_sample_data_mshprt_8_1_and_8_2() {
    let doc = vectors("toolbox.json");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(
        cases.len() >= 13,
        "expected every toolbox case, found {}",
        cases.len()
    );
    let mut seen = std::collections::BTreeSet::new();
    for case in cases {
        let f = case["function"].as_str().expect("function");
        let (i, o) = (&case["input"], &case["output"]);
        seen.insert(f.to_string());
        match f {
            "s1" => {
                let m = i["m_ascii"].as_str().expect("m");
                assert_eq!(toolbox::s1(m.as_bytes()).to_vec(), h(&o["s1"]), "s1({m:?})");
            }
            "k1" => {
                let out = toolbox::k1(&h(&i["n"]), &h16(&i["salt"]), &h(&i["p"]));
                assert_eq!(out.to_vec(), h(&o["k1"]));
                // The salt and P of this sample are s1("salt") and s1("info").
                assert_eq!(toolbox::s1(b"salt").to_vec(), h(&i["salt"]));
                assert_eq!(toolbox::s1(b"info").to_vec(), h(&i["p"]));
            }
            "k2" => {
                let out = toolbox::k2(&net_key(&i["n"]), &h(&i["p"]));
                assert_eq!(vec![out.nid], h(&o["nid"]), "k2 NID, P={}", i["p"]);
                assert_eq!(
                    out.encryption_key.expose_secret().to_vec(),
                    h(&o["encryption_key"])
                );
                assert_eq!(
                    out.privacy_key.expose_secret().to_vec(),
                    h(&o["privacy_key"])
                );
            }
            "k3" => assert_eq!(toolbox::k3(&net_key(&i["n"])).to_vec(), h(&o["network_id"])),
            "k4" => {
                let app = AppKey::from_hex(i["n"].as_str().expect("n")).expect("app key");
                assert_eq!(vec![toolbox::k4(&app)], h(&o["aid"]));
            }
            "identity_key" => assert_eq!(
                toolbox::identity_key(&net_key(&i["net_key"]))
                    .expose_secret()
                    .to_vec(),
                h(&o["identity_key"])
            ),
            "beacon_key" => assert_eq!(
                toolbox::beacon_key(&net_key(&i["net_key"]))
                    .expose_secret()
                    .to_vec(),
                h(&o["beacon_key"])
            ),
            "private_beacon_key" => assert_eq!(
                toolbox::private_beacon_key(&net_key(&i["net_key"]))
                    .expose_secret()
                    .to_vec(),
                h(&o["private_beacon_key"])
            ),
            other => panic!("toolbox.json has a function this test does not know: {other}"),
        }
    }
    for f in [
        "s1",
        "k1",
        "k2",
        "k3",
        "k4",
        "identity_key",
        "beacon_key",
        "private_beacon_key",
    ] {
        assert!(seen.contains(f), "no case for {f}");
    }
}

#[test]
fn friendship_p_matches_sample_8_2_3() {
    // LPN 0x1201, Friend 0x2345, LPNCounter 0x0000, FriendCounter 0x072f.
    assert_eq!(
        hex::encode(toolbox::friendship_p(0x1201, 0x2345, 0x0000, 0x072f)),
        "01120123450000072f"
    );
}

#[test]
fn beacon_sample_data_mshprt_8_4() {
    let doc = vectors("beacons.json");
    let cases = doc["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let nk = net_key(&case["net_key"]);
        let state = BeaconState {
            flags: h(&case["flags"])[0],
            iv_index: u32hex(&case["iv_index"]),
        };
        let expected = h(&case["beacon"]);
        match case["kind"].as_str().expect("kind") {
            "secure_network" => {
                let bk = toolbox::beacon_key(&nk);
                let id = toolbox::k3(&nk);
                let b = beacon::secure_network_encode(&bk, state, &id);
                assert_eq!(b.to_vec(), expected);
                assert_eq!(
                    beacon::secure_network_decode(&bk, &id, &expected),
                    Ok(state)
                );
                // Failing cases: a flipped authentication bit, a flipped IV Index bit, another key.
                for flip in [21usize, 13, 1] {
                    let mut bad = expected.clone();
                    bad[flip] ^= 0x01;
                    assert_eq!(
                        beacon::secure_network_decode(&bk, &id, &bad),
                        Err(CryptoError::BeaconAuthFailed),
                        "flip in octet {flip}"
                    );
                }
                let other = toolbox::beacon_key(&NetKey::from_bytes([0x11; 16]));
                assert!(beacon::secure_network_decode(&other, &id, &expected).is_err());
                assert!(beacon::secure_network_decode(&bk, &id, &expected[..21]).is_err());
            }
            "private" => {
                let pbk = toolbox::private_beacon_key(&nk);
                let random: [u8; 13] = h(&case["random"]).try_into().expect("13");
                let b = beacon::private_encode(&pbk, state, &random).expect("encode");
                assert_eq!(b.to_vec(), expected);
                assert_eq!(beacon::private_decode(&pbk, &expected), Ok(state));
                for flip in [26usize, 14, 1] {
                    let mut bad = expected.clone();
                    bad[flip] ^= 0x80;
                    assert_eq!(
                        beacon::private_decode(&pbk, &bad),
                        Err(CryptoError::BeaconAuthFailed),
                        "flip in octet {flip}"
                    );
                }
            }
            other => panic!("unknown beacon kind {other}"),
        }
    }
}

/// Node Identity hash, sample 8.6.2 (reference §8.3): NetKey 7dd7364c…, address 0x1201.
#[test]
fn node_identity_sample() {
    let ik = toolbox::identity_key(&NetKey::from_hex("7dd7364cd842ad18c17c2b820c84c3d6").unwrap());
    let random = hex::decode("34ae608fbbc1f2c6").unwrap().try_into().unwrap();
    assert_eq!(
        hex::encode(beacon::node_identity_hash(&ik, &random, 0x1201)),
        "00861765aefcc57b"
    );
}

#[test]
fn network_sample_message_1_control() {
    let doc = vectors("network.json");
    let case = doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "message_1")
        .expect("message_1");
    let keys = toolbox::k2(&net_key(&case["net_key"]), &[0]);
    let iv = u32hex(&case["iv_index"]);
    let hdr = NetworkHeader {
        ctl: case["ctl"] == 1,
        ttl: case["ttl"].as_u64().expect("ttl") as u8,
        seq: u32hex(&case["seq"]),
        src: u32hex(&case["src"]) as u16,
        dst: u32hex(&case["dst"]) as u16,
    };
    assert_eq!(
        nonce::network(hdr.ctl, hdr.ttl, hdr.seq, hdr.src, iv).to_vec(),
        h(&case["network_nonce"])
    );
    let tpdu = h(&case["transport_pdu"]);
    let pdu = network::encrypt_pdu(&keys, iv, &hdr, &tpdu).expect("encrypt");
    assert_eq!(hex::encode(&pdu), case["network_pdu"].as_str().unwrap());
    let dec = network::decrypt_pdu(&keys, iv, &pdu).expect("decrypt");
    assert_eq!(dec.header, hdr);
    assert_eq!(dec.transport_pdu, tpdu);
    assert!(!dec.ivi);
    // A flipped NetMIC bit and a flipped ciphertext bit both fail.
    for at in [pdu.len() - 1, 10] {
        let mut bad = pdu.clone();
        bad[at] ^= 0x04;
        assert_eq!(
            network::decrypt_pdu(&keys, iv, &bad),
            Err(CryptoError::MicMismatch)
        );
    }
    // The wrong IV Index fails; a different subnet's keys are told apart by NID.
    assert!(network::decrypt_pdu(&keys, iv + 1, &pdu).is_err());
    let other = toolbox::k2(&NetKey::from_bytes([0x42; 16]), &[0]);
    assert!(network::decrypt_pdu(&other, iv, &pdu).is_err());
}

/// Message #6: Config AppKey Add, encrypted with the device key, segmented in two.
/// The lower transport segment headers are built here from the sample's fields (the lower
/// transport layer itself belongs to `net/`), so every value of the case is asserted.
#[test]
fn network_sample_message_6_device_key_segmented() {
    let doc = vectors("network.json");
    let case = doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "message_6")
        .expect("message_6");
    let keys = toolbox::k2(&net_key(&case["net_key"]), &[0]);
    let dev_key = DevKey::from_hex(case["dev_key"].as_str().unwrap()).unwrap();
    let iv = u32hex(&case["iv_index"]);
    let seq = u32hex(&case["seq"]);
    let src = u32hex(&case["src"]) as u16;
    let dst = u32hex(&case["dst"]) as u16;
    let ttl = case["ttl"].as_u64().unwrap() as u8;
    let access_pdu = h(&case["access_pdu"]);
    assert_eq!(
        nonce::device(false, seq, src, dst, iv).to_vec(),
        h(&case["device_nonce"])
    );

    let params = AccessParams {
        seq,
        src,
        dst,
        iv_index: iv,
    };
    let upper = access::encrypt(
        AccessKey::Dev(&dev_key),
        &params,
        None,
        &access_pdu,
        MicLen::Mic4,
    )
    .expect("encrypt access");
    assert_eq!(
        hex::encode(&upper),
        case["upper_transport_pdu"].as_str().unwrap()
    );
    assert_eq!(
        access::decrypt(
            AccessKey::Dev(&dev_key),
            &params,
            None,
            &upper,
            MicLen::Mic4
        )
        .unwrap(),
        access_pdu
    );
    let mut bad = upper.clone();
    bad[upper.len() - 1] ^= 1;
    assert_eq!(
        access::decrypt(AccessKey::Dev(&dev_key), &params, None, &bad, MicLen::Mic4),
        Err(CryptoError::MicMismatch)
    );
    // An application key with the same bytes uses another nonce, so it does not decrypt.
    let as_app = AppKey::from_bytes(*dev_key.expose_secret());
    assert!(access::decrypt(AccessKey::App(&as_app), &params, None, &upper, MicLen::Mic4).is_err());

    // Segmented access, AKF=0 AID=0, SZMIC=0, SeqZero = SEQ & 0x1fff, 12-octet segments.
    let chunks: Vec<&[u8]> = upper.chunks(12).collect();
    let seg_n = (chunks.len() - 1) as u32;
    let seq_zero = seq & 0x1fff;
    let lowers: Vec<Vec<u8>> = chunks
        .iter()
        .enumerate()
        .map(|(o, c)| {
            let hdr = (seq_zero << 10) | ((o as u32) << 5) | seg_n;
            let mut v = vec![0x80];
            v.extend_from_slice(&hdr.to_be_bytes()[1..]);
            v.extend_from_slice(c);
            v
        })
        .collect();
    let expected_lowers: Vec<Vec<u8>> = case["lower_transport_pdus"]
        .as_array()
        .unwrap()
        .iter()
        .map(h)
        .collect();
    assert_eq!(lowers, expected_lowers);

    let seqs: Vec<u32> = case["seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(u32hex)
        .collect();
    let expected_pdus: Vec<Vec<u8>> = case["network_pdus"]
        .as_array()
        .unwrap()
        .iter()
        .map(h)
        .collect();
    assert_eq!(seqs.len(), expected_pdus.len());
    for ((lower, seq), expected) in lowers.iter().zip(&seqs).zip(&expected_pdus) {
        let hdr = NetworkHeader {
            ctl: false,
            ttl,
            seq: *seq,
            src,
            dst,
        };
        let pdu = network::encrypt_pdu(&keys, iv, &hdr, lower).expect("encrypt");
        assert_eq!(&pdu, expected, "network PDU for SEQ {seq:06x}");
        let dec = network::decrypt_pdu(&keys, iv, expected).expect("decrypt");
        assert_eq!(dec.header, hdr);
        assert_eq!(&dec.transport_pdu, lower);
    }
}

fn check_provisioning(file: &str) {
    let v = vectors(file);
    let alg = Algorithm::from_id(v["algorithm"].as_u64().unwrap() as u8).expect("algorithm");
    let n = alg.value_len();

    // Key pairs from the sample's private keys reproduce its public keys and ECDH secret.
    let prov = KeyPair::from_private_bytes(&h(&v["provisioner_private_key"])).expect("prov key");
    let dev = KeyPair::from_private_bytes(&h(&v["device_private_key"])).expect("dev key");
    assert_eq!(
        prov.public_key().to_bytes().to_vec(),
        h(&v["provisioner_public_key"])
    );
    assert_eq!(
        dev.public_key().to_bytes().to_vec(),
        h(&v["device_public_key"])
    );
    let dev_pub = PublicKey::from_bytes(&h(&v["device_public_key"])).expect("valid device key");
    let prov_pub = PublicKey::from_bytes(&h(&v["provisioner_public_key"])).expect("valid");
    let ecdh = prov.ecdh(&dev_pub).expect("ecdh");
    assert_eq!(ecdh.expose_secret().to_vec(), h(&v["ecdh_secret"]));
    assert_eq!(dev.ecdh(&prov_pub).expect("ecdh"), ecdh, "both sides agree");

    // The Public Key PDUs are the type octet 0x03 and X ‖ Y.
    assert_eq!(
        h(&v["public_key_pdu_provisioner"])[1..],
        prov.public_key().to_bytes()
    );
    assert_eq!(
        h(&v["public_key_pdu_device"])[1..],
        dev.public_key().to_bytes()
    );

    // ConfirmationInputs from the PDUs' parameters.
    let invite: [u8; 1] = h(&v["invite_pdu"])[1..].try_into().unwrap();
    let caps: [u8; 11] = h(&v["capabilities_pdu"])[1..].try_into().unwrap();
    let start: [u8; 5] = h(&v["start_pdu"])[1..].try_into().unwrap();
    let ci = prov::confirmation_inputs(
        &invite,
        &caps,
        &start,
        prov.public_key().as_bytes(),
        dev.public_key().as_bytes(),
    );
    assert_eq!(ci.to_vec(), h(&v["confirmation_inputs"]));
    assert_eq!(start[0], alg.id());

    let auth = AuthValue::from_slice(&h(&v["auth_value"])).expect("auth");
    assert_eq!(auth.len(), n);
    let salt = prov::confirmation_salt(alg, &ci);
    assert_eq!(salt.as_bytes(), h(&v["confirmation_salt"]));
    let ck = prov::confirmation_key(alg, &ecdh, &salt, &auth).expect("conf key");
    assert_eq!(ck.expose_secret(), h(&v["confirmation_key"]));

    let rp = ProvRandom::from_slice(&h(&v["random_provisioner"])).unwrap();
    let rd = ProvRandom::from_slice(&h(&v["random_device"])).unwrap();
    let cp = prov::confirmation(alg, &ck, &rp, &auth).unwrap();
    let cd = prov::confirmation(alg, &ck, &rd, &auth).unwrap();
    assert_eq!(cp.as_bytes(), h(&v["confirmation_provisioner"]));
    assert_eq!(cd.as_bytes(), h(&v["confirmation_device"]));

    let ctx = ConfirmationContext::new(alg, &ecdh, &ci, auth.clone()).unwrap();
    assert!(ctx.verify(
        &rd,
        &Confirmation::from_slice(&h(&v["confirmation_device"])).unwrap()
    ));
    assert!(
        !ctx.verify(&rp, &cd),
        "a confirmation does not verify another random"
    );

    // Failing case: a wrong AuthValue (one bit) gives a different confirmation.
    let mut wrong = auth.expose_secret().to_vec();
    wrong[n - 1] ^= 1;
    let wrong = AuthValue::from_slice(&wrong).unwrap();
    let ctx_wrong = ConfirmationContext::new(alg, &ecdh, &ci, wrong).unwrap();
    assert_ne!(ctx_wrong.confirm(&rd).unwrap(), cd);
    assert!(!ctx_wrong.verify(&rd, &cd));
    // And an AuthValue of the other algorithm's length is refused.
    let other_len = AuthValue::zeros(48 - n).unwrap();
    assert!(ConfirmationContext::new(alg, &ecdh, &ci, other_len).is_err());

    let keys = ctx.session_keys(&ecdh, &rp, &rd);
    assert_eq!(keys.provisioning_salt.to_vec(), h(&v["provisioning_salt"]));
    assert_eq!(
        keys.session_key.expose_secret().to_vec(),
        h(&v["session_key"])
    );
    assert_eq!(keys.session_nonce.to_vec(), h(&v["session_nonce"]));
    assert_eq!(
        keys.device_key.expose_secret().to_vec(),
        h(&v["device_key"])
    );

    // Provisioning Data: the plaintext is NetKey ‖ KeyIndex ‖ Flags ‖ IV Index ‖ Address.
    let pd = &v["provisioning_data"];
    let mut plain = h(&pd["net_key"]);
    for f in ["key_index", "flags", "iv_index", "unicast_address"] {
        plain.extend(h(&pd[f]));
    }
    assert_eq!(plain, h(&pd["plain"]));
    let plain = ProvisioningDataPlain::from_slice(&plain).unwrap();
    let enc = keys.encrypt_data(&plain).unwrap();
    let data_pdu = h(&v["data_pdu"]);
    assert_eq!(data_pdu[0], 0x07);
    assert_eq!(enc.to_vec(), data_pdu[1..]);
    assert_eq!(keys.decrypt_data(&data_pdu[1..]).unwrap(), plain);
    for at in [0usize, 24, 25, 32] {
        let mut bad = data_pdu[1..].to_vec();
        bad[at] ^= 0x10;
        assert_eq!(
            keys.decrypt_data(&bad),
            Err(CryptoError::MicMismatch),
            "flip at {at}"
        );
    }
    assert!(keys.decrypt_data(&data_pdu[1..32]).is_err());
    assert_eq!(h(&v["complete_pdu"]), vec![0x08]);
}

#[test]
fn provisioning_sample_cmac_mshprt_8_17_1() {
    check_provisioning("provisioning-cmac.json");
}

#[test]
fn provisioning_sample_hmac_mshprt_8_17_2() {
    check_provisioning("provisioning-hmac.json");
}
