//! Public key validation, ECDH agreement, and property tests: encrypt→decrypt and
//! obfuscate→deobfuscate round trips for random inputs.

use mesh_crypto::ccm::{self, MicLen};
use mesh_crypto::ecdh::{KeyPair, PublicKey};
use mesh_crypto::network::{self, NetworkHeader};
use mesh_crypto::provisioning::{Algorithm, ConfirmationContext, ProvRandom, confirmation_inputs};
use mesh_crypto::{AuthValue, CryptoError, NetKey, ProvisioningDataPlain, toolbox};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

const DEVICE_PUBLIC: &str = "f465e43ff23d3f1b9dc7dfc04da8758184dbc966204796eccf0d6cf5e16500cc0201d048bcbbd899eeefc424164e33c201c2b010ca6b4d43a8a155cad8ecb279";
/// The P-256 field prime.
const P: &str = "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff";

#[test]
fn invalid_public_keys_are_refused() {
    let good = hex::decode(DEVICE_PUBLIC).unwrap();
    assert!(PublicKey::from_bytes(&good).is_ok());

    let mut off_curve = good.clone();
    off_curve[63] ^= 0x01; // Y + 1: X is fine, the point is not on the curve
    let mut x_is_p = hex::decode(P).unwrap();
    x_is_p.extend_from_slice(&good[32..]);
    let mut y_is_p = good[..32].to_vec();
    y_is_p.extend(hex::decode(P).unwrap());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("63 octets", good[..63].to_vec()),
        (
            "65 octets (SEC1 prefix left on)",
            [&[0x04][..], &good].concat(),
        ),
        ("point at infinity (all zeros)", vec![0; 64]),
        ("off the curve", off_curve),
        ("X = p, out of range", x_is_p),
        ("Y = p, out of range", y_is_p),
        ("all ones, out of range", vec![0xff; 64]),
    ];
    for (name, bytes) in cases {
        let r = PublicKey::from_bytes(&bytes);
        assert!(
            matches!(
                r,
                Err(CryptoError::InvalidPublicKey(_) | CryptoError::InvalidLength { .. })
            ),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn reflected_public_key_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let ours = KeyPair::generate(&mut rng);
    let echoed = PublicKey::from_bytes(ours.public_key().as_bytes()).unwrap();
    assert!(matches!(
        ours.ecdh(&echoed),
        Err(CryptoError::InvalidPublicKey(_))
    ));
}

#[test]
fn invalid_private_keys_are_refused() {
    assert_eq!(
        KeyPair::from_private_bytes(&[0; 32]).unwrap_err(),
        CryptoError::InvalidPrivateKey
    );
    assert_eq!(
        KeyPair::from_private_bytes(&[0xff; 32]).unwrap_err(),
        CryptoError::InvalidPrivateKey
    );
    assert!(KeyPair::from_private_bytes(&[1; 31]).is_err());
}

#[test]
fn seeded_key_pairs_are_deterministic_and_agree() {
    let a1 = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(7));
    let a2 = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(7));
    assert_eq!(a1.public_key(), a2.public_key());
    let b = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(8));
    assert_ne!(a1.public_key(), b.public_key());
    assert_eq!(
        a1.ecdh(b.public_key()).unwrap(),
        b.ecdh(a1.public_key()).unwrap()
    );
    assert!(!format!("{a1:?}").contains(&hex::encode(a1.expose_private_bytes())));
}

/// Both sides of a whole session on fresh keys: the device's confirmation verifies, the
/// provisioner's data decrypts on the device, and a reflected random is detectable.
#[test]
fn full_session_both_algorithms() {
    for alg in [Algorithm::CmacAes128, Algorithm::HmacSha256] {
        let mut rng = ChaCha20Rng::seed_from_u64(u64::from(alg.id()) + 100);
        let p = KeyPair::generate(&mut rng);
        let d = KeyPair::generate(&mut rng);
        let ci = confirmation_inputs(
            &[5],
            &[1; 11],
            &[alg.id(), 0, 1, 0, 0],
            p.public_key().as_bytes(),
            d.public_key().as_bytes(),
        );
        let auth = AuthValue::generate(&mut rng, alg.value_len()).unwrap();
        let ep = p.ecdh(d.public_key()).unwrap();
        let ed = d.ecdh(p.public_key()).unwrap();
        let cp = ConfirmationContext::new(alg, &ep, &ci, auth.clone()).unwrap();
        let cd = ConfirmationContext::new(alg, &ed, &ci, auth).unwrap();
        let rp = ProvRandom::generate(&mut rng, alg);
        let rd = ProvRandom::generate(&mut rng, alg);
        assert!(!rp.ct_eq(&rd));
        assert!(cp.verify(&rd, &cd.confirm(&rd).unwrap()));
        assert!(cd.verify(&rp, &cp.confirm(&rp).unwrap()));
        let kp = cp.session_keys(&ep, &rp, &rd);
        let kd = cd.session_keys(&ed, &rp, &rd);
        assert_eq!(kp.device_key, kd.device_key);
        let plain = ProvisioningDataPlain::from_bytes([9; 25]);
        assert_eq!(
            kd.decrypt_data(&kp.encrypt_data(&plain).unwrap()).unwrap(),
            plain
        );
        assert!(!format!("{kp:?}").contains("09090909"));
    }
}

fn alg_strategy() -> impl Strategy<Value = Algorithm> {
    prop_oneof![Just(Algorithm::CmacAes128), Just(Algorithm::HmacSha256)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ccm_round_trip(key in any::<[u8; 16]>(), nonce in any::<[u8; 13]>(),
                      aad in prop::collection::vec(any::<u8>(), 0..20),
                      data in prop::collection::vec(any::<u8>(), 0..400),
                      mic8 in any::<bool>(), flip in any::<prop::sample::Index>()) {
        let mic = if mic8 { MicLen::Mic8 } else { MicLen::Mic4 };
        let ct = ccm::encrypt(&key, &nonce, &aad, &data, mic).unwrap();
        prop_assert_eq!(ct.len(), data.len() + mic.len());
        prop_assert_eq!(&ccm::decrypt(&key, &nonce, &aad, &ct, mic).unwrap(), &data);
        let mut bad = ct.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 0x01;
        prop_assert_eq!(ccm::decrypt(&key, &nonce, &aad, &bad, mic), Err(CryptoError::MicMismatch));
    }

    #[test]
    fn network_pdu_round_trip(key in any::<[u8; 16]>(), iv in any::<u32>(), ctl in any::<bool>(),
                              ttl in 0u8..128, seq in 0u32..0x100_0000, src in 1u16..0x8000,
                              dst in any::<u16>(), len in 1usize..=16, fill in any::<u8>()) {
        let keys = toolbox::k2(&NetKey::from_bytes(key), &[0]);
        let len = if ctl { len.min(12) } else { len };
        let tpdu: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
        let hdr = NetworkHeader { ctl, ttl, seq, src, dst };
        let pdu = network::encrypt_pdu(&keys, iv, &hdr, &tpdu).unwrap();
        prop_assert!(pdu.len() <= network::MAX_NETWORK_PDU);
        prop_assert_eq!(pdu[0] >> 7, (iv & 1) as u8);
        let dec = network::decrypt_pdu(&keys, iv, &pdu).unwrap();
        prop_assert_eq!(dec.header, hdr);
        prop_assert_eq!(dec.transport_pdu, tpdu);
    }

    #[test]
    fn obfuscation_is_an_involution(key in any::<[u8; 16]>(), iv in any::<u32>(),
                                    pdu in prop::collection::vec(any::<u8>(), 14..=29)) {
        let keys = toolbox::k2(&NetKey::from_bytes(key), &[0]);
        let mut b = pdu.clone();
        network::obfuscate(&keys.privacy_key, iv, &mut b).unwrap();
        prop_assert_eq!(&b[7..], &pdu[7..]);
        prop_assert_eq!(b[0], pdu[0]);
        network::obfuscate(&keys.privacy_key, iv, &mut b).unwrap();
        prop_assert_eq!(b, pdu);
    }

    #[test]
    fn network_decrypt_never_panics(key in any::<[u8; 16]>(), iv in any::<u32>(),
                                    pdu in prop::collection::vec(any::<u8>(), 0..40)) {
        let keys = toolbox::k2(&NetKey::from_bytes(key), &[0]);
        let _ = network::decrypt_pdu(&keys, iv, &pdu);
    }

    #[test]
    fn public_key_import_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..70)) {
        let _ = PublicKey::from_bytes(&bytes);
    }

    #[test]
    fn provisioning_data_round_trip(alg in alg_strategy(), seed in any::<u64>(), data in any::<[u8; 25]>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let p = KeyPair::generate(&mut rng);
        let d = KeyPair::generate(&mut rng);
        let e = p.ecdh(d.public_key()).unwrap();
        let ci = [0u8; 145];
        let ctx = ConfirmationContext::new(alg, &e, &ci, AuthValue::zeros(alg.value_len()).unwrap()).unwrap();
        let keys = ctx.session_keys(&e, &ProvRandom::generate(&mut rng, alg), &ProvRandom::generate(&mut rng, alg));
        let plain = ProvisioningDataPlain::from_bytes(data);
        let enc = keys.encrypt_data(&plain).unwrap();
        prop_assert_eq!(keys.decrypt_data(&enc).unwrap(), plain);
    }
}
