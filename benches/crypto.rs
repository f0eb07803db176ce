//! Criterion benchmarks of the mesh security toolbox: k2, one provisioning session's host-side
//! crypto for each algorithm, and network PDU encrypt+obfuscate / decrypt.
//!
//! Run with `cargo bench --bench crypto`; the figures in README.md come from that command.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_crypto::ecdh::{KeyPair, PublicKey};
use mesh_crypto::network::{self, NetworkHeader};
use mesh_crypto::provisioning::{
    Algorithm, Confirmation, ConfirmationContext, ProvRandom, confirmation_inputs,
};
use mesh_crypto::{AuthValue, NetKey, ProvisioningDataPlain, toolbox};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

fn bench_k2(c: &mut Criterion) {
    let nk = NetKey::from_bytes([0x7d; 16]);
    c.bench_function("k2 (flooding)", |b| {
        b.iter(|| toolbox::k2(black_box(&nk), &[0x00]))
    });
}

/// What the provisioner computes in one session: its key pair, the device key import and
/// ECDH, ConfirmationSalt/Key, its confirmation and the check of the device's, the session
/// keys and device key, and the Provisioning Data encryption.
fn provisioner_session(
    alg: Algorithm,
    rng: &mut ChaCha20Rng,
    device_public: &[u8; 64],
    device_random: &ProvRandom,
    device_confirmation: &Confirmation,
) -> [u8; 33] {
    let ours = KeyPair::generate(rng);
    let peer = PublicKey::from_bytes(device_public).expect("valid");
    let ecdh = ours.ecdh(&peer).expect("ecdh");
    let start = [alg.id(), 0, 0, 0, 0];
    let ci = confirmation_inputs(
        &[0],
        &[1; 11],
        &start,
        ours.public_key().as_bytes(),
        device_public,
    );
    let ctx = ConfirmationContext::new(
        alg,
        &ecdh,
        &ci,
        AuthValue::zeros(alg.value_len()).expect("len"),
    )
    .expect("ctx");
    let rp = ProvRandom::generate(rng, alg);
    let cp = ctx.confirm(&rp).expect("confirm");
    black_box(cp);
    // The device's confirmation was made for another session: it fails, as it would for a
    // wrong AuthValue, but costs the same to check.
    black_box(ctx.verify(device_random, device_confirmation));
    let keys = ctx.session_keys(&ecdh, &rp, device_random);
    keys.encrypt_data(&ProvisioningDataPlain::from_bytes([0x11; 25]))
        .expect("encrypt")
}

fn bench_sessions(c: &mut Criterion) {
    let mut g = c.benchmark_group("provisioning session, provisioner side");
    g.sample_size(40);
    for alg in [Algorithm::CmacAes128, Algorithm::HmacSha256] {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let device = KeyPair::generate(&mut rng);
        let dp = device.public_key().to_bytes();
        let rd = ProvRandom::generate(&mut rng, alg);
        let cd = Confirmation::from_slice(&vec![0x5a; alg.value_len()]).expect("len");
        g.bench_function(alg.name(), |b| {
            b.iter(|| provisioner_session(alg, &mut rng, &dp, &rd, &cd))
        });
    }
    g.finish();
    let mut rng = ChaCha20Rng::seed_from_u64(43);
    let peer = KeyPair::generate(&mut rng);
    c.bench_function("P-256 key pair", |b| b.iter(|| KeyPair::generate(&mut rng)));
    let ours = KeyPair::generate(&mut rng);
    c.bench_function("P-256 public key import + ECDH", |b| {
        b.iter(|| {
            let p = PublicKey::from_bytes(black_box(peer.public_key().as_bytes())).expect("valid");
            ours.ecdh(&p).expect("ecdh")
        })
    });
}

fn bench_network(c: &mut Criterion) {
    let keys = toolbox::k2(&NetKey::from_bytes([0x7d; 16]), &[0x00]);
    let hdr = NetworkHeader {
        ctl: false,
        ttl: 4,
        seq: 0x3129ab,
        src: 0x0003,
        dst: 0x1201,
    };
    let tpdu = [0x26u8; 16];
    c.bench_function(
        "network PDU encrypt+obfuscate (16-octet transport PDU)",
        |b| b.iter(|| network::encrypt_pdu(&keys, 0x12345678, black_box(&hdr), black_box(&tpdu))),
    );
    let pdu = network::encrypt_pdu(&keys, 0x12345678, &hdr, &tpdu).expect("encrypt");
    c.bench_function("network PDU deobfuscate+decrypt (29 octets)", |b| {
        b.iter(|| network::decrypt_pdu(&keys, 0x12345678, black_box(&pdu)))
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = bench_k2, bench_sessions, bench_network }
criterion_main!(benches);
