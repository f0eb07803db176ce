//! `meshprov keys derive` as a user runs it: output, JSON shape, exit codes.
//!
//! The two non-sample keys were derived independently with Python `cryptography` 48
//! (AES-CMAC from OpenSSL) following reference §6.1, so they check more than the spec samples.

use std::process::Command;

fn meshprov(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args(args)
        .output()
        .expect("run meshprov");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (net key, app key, expected JSON).
const INDEPENDENT: &[(&str, &str, &str)] = &[
    (
        "000102030405060708090a0b0c0d0e0f",
        "ffeeddccbbaa99887766554433221100",
        r#"{"nid":"1c","encryption_key":"ebb3671521d99c588214ad341f7337df","privacy_key":"3e6fb134d2e09513bc0fbd0cffff53d5","network_id":"a6d6453342711b5c","identity_key":"560c6270fa2011e7f8a0c3224bf102bb","beacon_key":"abdc89019cd65177f6c8fd6b418bb57a","private_beacon_key":"b8da42968ac7b26521c12f5d9c7b7987","aid":"21"}"#,
    ),
    (
        "5C2A9A3BD1E86F1E5B2C8BB5A2D3F4C1",
        "0x0123456789abcdef0123456789abcdef",
        r#"{"nid":"65","encryption_key":"ba22959bac55c097071dc5ac651bb51e","privacy_key":"6092a4f486d7655d831f3d4c26396ca8","network_id":"bfbafd49ccaa37e4","identity_key":"dafab2b34bb5f71573fe41a071d66925","beacon_key":"3fffa8ac16e0941f5b317443f3ad2c46","private_beacon_key":"9970f4a64dd8e9aa74de7393c1f8ffbc","aid":"0b"}"#,
    ),
];

#[test]
fn json_matches_an_independent_implementation() {
    for (nk, ak, expected) in INDEPENDENT {
        let (code, out, err) =
            meshprov(&["keys", "derive", "--net-key", nk, "--app-key", ak, "--json"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim_end(), *expected);
        assert_eq!(out.lines().count(), 1, "one object on one line");
    }
}

#[test]
fn json_without_app_key_has_null_aid() {
    let (code, out, _) = meshprov(&[
        "keys",
        "derive",
        "--net-key",
        "7dd7364cd842ad18c17c2b820c84c3d6",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["nid"], "68");
    assert_eq!(v["network_id"], "3ecaff672f673370");
    assert!(v["aid"].is_null());
    for k in [
        "nid",
        "encryption_key",
        "privacy_key",
        "network_id",
        "identity_key",
        "beacon_key",
        "private_beacon_key",
        "aid",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
}

#[test]
fn text_output_is_labelled() {
    let (code, out, _) = meshprov(&[
        "keys",
        "derive",
        "--net-key",
        "7dd7364cd842ad18c17c2b820c84c3d6",
        "--app-key",
        "63964771734fbd76e3b40519d1d94a48",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("NID                 68"), "{out}");
    assert!(
        out.contains("Beacon key          5423d967da639a99cb02231a83f7d254"),
        "{out}"
    );
    assert!(out.contains("AID                 26"), "{out}");
}

#[test]
fn malformed_keys_get_one_line_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--net-key", "7dd7364cd842ad18c17c2b820c84c3d"],
            "invalid --net-key: expected 32 hex digits (16 bytes), got 31",
        ),
        (
            &["--net-key", "7dd7364cd842ad18c17c2b820c84c3d6aa"],
            "invalid --net-key: expected 32 hex digits (16 bytes), got 34",
        ),
        (
            &["--net-key", "7dd7364cd842ad18c17c2b820c84c3dx"],
            "invalid --net-key: 'x' at position 32 is not a hex digit",
        ),
        (
            &[
                "--net-key",
                "7dd7364cd842ad18c17c2b820c84c3d6",
                "--app-key",
                "",
            ],
            "invalid --app-key: expected 32 hex digits (16 bytes), got 0",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["keys", "derive"];
        full.extend_from_slice(args);
        let (code, out, err) = meshprov(&full);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty(), "nothing on stdout: {out}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let (code, _, _) = meshprov(&["keys", "derive"]);
    assert_eq!(code, 2, "a missing --net-key is a usage error too");
}

/// Standard output that is a closed pipe (`meshprov … | head -0`) is not a panic: the line is
/// dropped and the exit code is the command's own.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args([
            "keys",
            "derive",
            "--net-key",
            "7dd7364cd842ad18c17c2b820c84c3d6",
        ])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run meshprov");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
