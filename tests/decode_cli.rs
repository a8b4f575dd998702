//! Black-box tests of `relay-gateway decode` and `encode` on `fixtures/wcf`:
//! every fixture's transcript, every invalid input's one-line error and exit
//! status 1, stdin input, and XML-to-binary encoding of captured envelopes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relay-gateway"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wcf")
}

fn decode_args(name: &str) -> Vec<&'static str> {
    if name.ends_with(".envelope.hex.txt") {
        vec!["--envelope"]
    } else if name.ends_with(".session.hex.txt") {
        vec!["--envelope", "--session"]
    } else {
        vec![]
    }
}

fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn relay-gateway");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[test]
fn every_fixture_decodes_to_its_transcript() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".hex.txt") else {
            continue;
        };
        let expected =
            std::fs::read_to_string(fixtures().join(format!("{stem}.transcript"))).unwrap();
        let mut cmd = bin();
        cmd.arg("decode").args(decode_args(&name)).arg(&path);
        let out = run(cmd, None);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected, "{name}");
        seen += 1;
    }
    assert!(seen >= 13, "only {seen} fixtures");
}

#[test]
fn invalid_inputs_fail_with_one_line_naming_the_offset() {
    let dir = fixtures().join("invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".hex.txt") else {
            continue;
        };
        let expected = std::fs::read_to_string(dir.join(format!("{stem}.error"))).unwrap();
        let mut cmd = bin();
        cmd.arg("decode").arg(&path);
        let out = run(cmd, None);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr, expected, "{name}");
        assert_eq!(stderr.lines().count(), 1, "{name}");
        assert!(stderr.contains("offset "), "{name}");
        seen += 1;
    }
    assert!(seen >= 10);
}

#[test]
fn raw_bytes_on_stdin() {
    // The 42-byte [MC-NBFS] example as raw bytes on stdin.
    let bytes: Vec<u8> = vec![
        0x56, 0x02, 0x0b, 0x01, 0x61, 0x06, 0x0b, 0x01, 0x73, 0x04, 0x56, 0x08, 0x44, 0x0a, 0x1e,
        0x00, 0x82, 0x99, 0x06, 0x61, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x01, 0x56, 0x0e, 0x40, 0x09,
        0x49, 0x6e, 0x76, 0x65, 0x6e, 0x74, 0x6f, 0x72, 0x79, 0x81, 0x01, 0x01,
    ];
    let mut cmd = bin();
    cmd.args(["decode", "--envelope", "-"]);
    let out = run(cmd, Some(&bytes));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("<Inventory>0</Inventory>"), "{text}");
    // Random garbage on stdin: exit 1, one line, no panic.
    let mut cmd = bin();
    cmd.args(["decode", "-"]);
    let out = run(cmd, Some(&[0xff, 0x00, 0x13, 0x37]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// The XML inside a single-envelope transcript (lines indented by 4).
fn envelope_xml(transcript: &str) -> String {
    transcript
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn encode_rebuilds_captured_envelopes_exactly() {
    // (transcript, bytes of the envelope, session?)
    for (transcript, hex, prefix) in [
        (
            "sdk5-listener-9352-relayedaccept.transcript",
            "sdk5-listener-9352-relayedaccept.hex.txt",
            4,
        ),
        (
            "sdk5-relay-reply-accepted.transcript",
            "sdk5-relay-reply-accepted.hex.txt",
            0,
        ),
    ] {
        let xml = envelope_xml(&std::fs::read_to_string(fixtures().join(transcript)).unwrap());
        let mut cmd = bin();
        cmd.args(["encode", "--envelope", "-"]);
        let out = run(cmd, Some(xml.as_bytes()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(fixtures().join(hex)).unwrap();
        let want: Vec<u8> = wcf::hexdump::parse(&text)
            .unwrap()
            .into_iter()
            .flat_map(|c| c.bytes)
            .collect();
        assert_eq!(out.stdout, want[prefix..], "{transcript}");
    }
}

#[test]
fn encode_session_then_decode_round_trips() {
    let xml = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">urn:x/Op</a:Action></s:Header><s:Body><Op xmlns="urn:x"><v>&lt;3 &amp; ünïcødé</v><w>你好</w></Op></s:Body></s:Envelope>"#;
    let mut cmd = bin();
    cmd.args(["encode", "--session", "--envelope", "-"]);
    let out = run(cmd, Some(xml.as_bytes()));
    assert!(out.status.success());
    assert_ne!(out.stdout[0], 0, "a session table was announced");
    let mut cmd = bin();
    cmd.args(["decode", "--envelope", "--session", "-"]);
    let back = run(cmd, Some(&out.stdout));
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    let text = String::from_utf8(back.stdout).unwrap();
    assert!(text.contains("<v>&lt;3 &amp; ünïcødé</v>"), "{text}");
    assert!(text.contains("<w>你好</w>"), "{text}");
    // Malformed XML: exit 1 and one line.
    let mut cmd = bin();
    cmd.args(["encode", "--envelope", "-"]);
    let out = run(cmd, Some(b"<a><b></a>"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}
