//! NBFX decode and encode against quick-xml parsing the text form of the same
//! documents, in one run. Documents: captured envelopes (the SDK's
//! RelayedAccept, the WS-Trust RST) and a large envelope (about 1 MiB body of
//! many small elements). Throughput is in events per second: NBFX records
//! read by our reader versus XML events read by quick-xml. After the runs
//! the ratio (ours / quick-xml) is printed per document from criterion's
//! estimates. `cargo bench -p wcf --bench nbfx`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)] // bench code

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput};
use quick_xml::events::Event;
use wcf::nbfx::{self, Reader, Record};
use wcf::Limits;

struct Doc {
    name: &'static str,
    binary: Vec<u8>,
    text: String,
}

fn fixture_doc(name: &'static str, file: &str, skip: usize) -> Doc {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/wcf")
        .join(file);
    let hex = std::fs::read_to_string(path).unwrap();
    let bytes: Vec<u8> = wcf::hexdump::parse(&hex)
        .unwrap()
        .into_iter()
        .flat_map(|c| c.bytes)
        .collect();
    let binary = bytes[skip..].to_vec();
    let text = nbfx::to_xml(&binary, Limits::DEFAULT, false).unwrap();
    Doc { name, binary, text }
}

fn large_doc() -> Doc {
    let mut text = String::from(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">urn:bench/Put</a:Action></s:Header><s:Body><Put xmlns="urn:bench">"#,
    );
    let mut i = 0;
    while text.len() < 1 << 20 {
        text.push_str(&format!(
            "<Item><Id>{i}</Id><Name>item number {i}</Name><Ok>true</Ok></Item>"
        ));
        i += 1;
    }
    text.push_str("</Put></s:Body></s:Envelope>");
    let binary = nbfx::from_xml(&text).unwrap();
    Doc {
        name: "large-1MiB",
        binary,
        text,
    }
}

/// Read every record and count the XML events they stand for, counted the
/// way quick-xml counts them: a start tag with its attributes and namespace
/// declarations is one event, a text is one, an end tag is one (so a
/// WithEndElement text record is two), an array of N items is 3N.
fn nbfx_events(doc: &[u8]) -> u64 {
    let mut r = Reader::new(doc, None, Limits::DEFAULT.with_max_message(usize::MAX), 0);
    let mut n = 0;
    while let Some(rec) = r.next().unwrap() {
        n += match &rec {
            Record::Attribute(_) | Record::Xmlns(_) => 0,
            Record::Text {
                end_element: true, ..
            } => 2,
            Record::Array(a) => 3 * a.count as u64,
            _ => 1,
        };
        black_box(&rec);
    }
    n
}

fn quick_xml_events(text: &str) -> u64 {
    let mut r = quick_xml::Reader::from_str(text);
    let mut n = 0;
    loop {
        match r.read_event().unwrap() {
            Event::Eof => return n,
            e => {
                black_box(&e);
                n += 1;
            }
        }
    }
}

fn main() {
    let docs = [
        fixture_doc(
            "relayed-accept",
            "sdk5-listener-9352-relayedaccept.hex.txt",
            4,
        ),
        fixture_doc("wstrust-rst", "wstrust-rst.envelope.hex.txt", 0),
        large_doc(),
    ];
    let mut c = Criterion::default().configure_from_args();
    for doc in &docs {
        let ours = nbfx_events(&doc.binary);
        let theirs = quick_xml_events(&doc.text);
        let mut g = c.benchmark_group(doc.name);
        g.throughput(Throughput::Elements(ours));
        g.bench_function("nbfx-decode", |b| {
            b.iter(|| nbfx_events(black_box(&doc.binary)))
        });
        g.throughput(Throughput::Bytes(doc.binary.len() as u64));
        g.bench_function("nbfx-reencode", |b| {
            b.iter(|| {
                nbfx::reencode(
                    black_box(&doc.binary),
                    None,
                    Limits::DEFAULT.with_max_message(usize::MAX),
                )
                .unwrap()
            })
        });
        g.throughput(Throughput::Bytes(doc.text.len() as u64));
        g.bench_function("nbfx-from-xml", |b| {
            b.iter(|| nbfx::from_xml(black_box(&doc.text)).unwrap())
        });
        g.throughput(Throughput::Elements(theirs));
        g.bench_function("quick-xml-parse", |b| {
            b.iter(|| quick_xml_events(black_box(&doc.text)))
        });
        g.finish();
    }
    c.final_summary();
    println!("\nNBFX decode vs quick-xml (events per second, same run):");
    for doc in &docs {
        let ours = nbfx_events(&doc.binary) as f64 / mean_seconds(doc.name, "nbfx-decode");
        let theirs = quick_xml_events(&doc.text) as f64 / mean_seconds(doc.name, "quick-xml-parse");
        println!(
            "  {:<16} binary {:>8} B, text {:>8} B, {} / {} events: nbfx {:>6.1} M events/s, quick-xml {:>6.1} M events/s, ratio {:.2}x",
            doc.name,
            doc.binary.len(),
            doc.text.len(),
            nbfx_events(&doc.binary),
            quick_xml_events(&doc.text),
            ours / 1e6,
            theirs / 1e6,
            ours / theirs
        );
    }
}

/// Mean time of one iteration, from criterion's saved estimate.
fn mean_seconds(group: &str, function: &str) -> f64 {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into());
    let path = Path::new(&dir)
        .join("criterion")
        .join(group)
        .join(function)
        .join("new/estimates.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["mean"]["point_estimate"].as_f64().unwrap() / 1e9
}
