//! WCF HTTP relays (issue 7, `wcf/PROTOCOL.md` §9, §11.3): curl ->
//! gateway -> `forward --listen --http` -> a plain Python HTTP server
//! (`tests/peers/http_origin.py`), with headers, status lines, HEAD, 204
//! and 100 MB bodies both ways; the attach's HTTPS and client-auth flags
//! honoured; the recorded replies of the real SDK listener
//! (`fixtures/wcf/http/sdk5-http-*`) played by an SDK-shaped listener (rhea
//! on AMQP, the dial-back and NMF server written here from the `wcf` crate)
//! and turned into the right HTTP responses, WrappedSoap11/12 included;
//! Mono's WCF `WebHttpBinding` and `BasicHttpBinding` services
//! (`tests/peers/MonoWeb.cs`) behind `forward --http` in place of
//! WebHttpRelayBinding/BasicHttpRelayBinding services; and the failures: no
//! listener, a listener that never dials back, a slow local server, a
//! listener that dies mid-reply.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sha2::{Digest, Sha256};
use support::gateway::{token, Gateway, ROOT};
use support::relayed::{dial_back, forward, notice, tls_config, Rhea, Stream};
use support::{free_port, http_origin as origin, run_with_timeout, spawn_ready, Proc};
use wcf::hexdump::{parse_steps, stream, Direction};
use wcf::web::{BodyFormat, Event, Incoming, RequestHead, Unframe};

fn forward_http(gw: &Gateway, path: &str, origin: u16, extra: &[&str]) -> Proc {
    let uri = format!("sb://localhost/{path}");
    let to = format!("http://127.0.0.1:{origin}/");
    let mut args = vec!["--listen", &uri, "--http", "--to", &to];
    args.extend_from_slice(extra);
    let (p, line, _) = spawn_ready(
        &mut forward(gw.amqps.unwrap(), gw.relayed.unwrap(), &gw.ca(), &args),
        "attached",
    );
    assert_eq!(line, format!("attached {uri}/"));
    p
}

/// curl with the gateway's CA, `-s -i`, and `args`.
fn curl(gw: &Gateway, args: &[&str]) -> Output {
    let ca = gw.ca();
    let mut c = Command::new("curl");
    c.args(["-s", "-S", "-i", "--max-time", "60", "--cacert"])
        .arg(&ca)
        .args(args);
    run_with_timeout(&mut c, Duration::from_secs(70))
}

/// [`curl`] on its own thread, for a test that plays the listener meanwhile.
fn curl_meanwhile(gw: &Gateway, args: &[&str]) -> std::thread::JoinHandle<Output> {
    let ca = gw.ca();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let mut c = Command::new("curl");
        c.args(["-s", "-S", "-i", "--max-time", "60", "--cacert"])
            .arg(&ca)
            .args(&args);
        run_with_timeout(&mut c, Duration::from_secs(70))
    })
}

/// A rhea listener registered as `RelayedHttp` on `path`, attached.
fn http_listener(gw: &Gateway, path: &str) -> Rhea {
    let rhea = Rhea::start(
        gw.amqps.unwrap(),
        &gw.ca(),
        &format!("sb://localhost/{path}/"),
        &token(path, ROOT, 600),
        1,
        serde_json::json!({"com.microsoft:listener-type": "RelayedHttp"}),
    );
    assert_eq!(rhea.next_of("attached")["event"], "attached");
    rhea
}

fn url(gw: &Gateway, rest: &str) -> String {
    format!("https://localhost:{}/{rest}", gw.https.port())
}

fn auth(path: &str) -> String {
    format!("ServiceBusAuthorization: {}", token(path, ROOT, 600))
}

/// Status code (and reason phrase), headers (lower-case names) and body of
/// `curl -i` output.
fn parse(out: &Output) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut raw = &out.stdout[..];
    let mut split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response: {}", String::from_utf8_lossy(&out.stderr)));
    // Skip interim responses (100 Continue).
    while raw.starts_with(b"HTTP/1.1 1") {
        raw = &raw[split + 4..];
        split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    }
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .trim_start_matches("HTTP/1.1 ")
        .to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn curl_reaches_a_local_web_server_through_forward_http() {
    let gw = Gateway::start("");
    let (_origin, port) = origin();
    let _fwd = forward_http(&gw, "web", port, &[]);
    let a = auth("web");

    let (status, h, body) = parse(&curl(&gw, &["-H", &a, &url(&gw, "web/hello")]));
    assert_eq!(status, "200 OK");
    assert_eq!(body, b"hello");
    assert_eq!(header(&h, "x-custom"), ["one"]);
    assert_eq!(
        header(&h, "set-cookie"),
        ["a=1", "b=2"],
        "repeated headers stay apart"
    );

    // What the local server saw: the path below the relay, the query, the
    // client's headers (repeated ones joined), never the token.
    let (_, _, body) = parse(&curl(
        &gw,
        &[
            "-H",
            &a,
            "-H",
            "X-Test: a",
            "-H",
            "X-Test: b",
            &url(&gw, "web/headers?q=1&r=2"),
        ],
    ));
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/headers?q=1&r=2");
    let got = |name: &str| {
        seen["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|p| p[1].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(got("X-Test"), ["a, b"]);
    assert!(got("ServiceBusAuthorization").is_empty() && got("Authorization").is_empty());
    assert_eq!(
        got("X-Forwarded-Host"),
        [format!("localhost:{}", gw.https.port())]
    );

    // A SAS token in Authorization works too and is not passed on either.
    let sas = format!("Authorization: {}", token("web", "SendOnly", 600));
    let (status, _, body) = parse(&curl(&gw, &["-H", &sas, &url(&gw, "web/headers")]));
    assert_eq!(status, "200 OK");
    assert!(!String::from_utf8_lossy(&body).contains("SharedAccessSignature"));

    // JSON (BodyFormat Json) comes back byte for byte; XML (BodyFormat Xml)
    // is re-encoded as binary XML on the way and arrives as the same infoset.
    let json = r#"{"a":[1,2,3],"b":"ü"}"#;
    let (status, h, body) = parse(&curl(
        &gw,
        &[
            "-H",
            &a,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            json,
            &url(&gw, "web/echo"),
        ],
    ));
    assert_eq!(status, "200 OK");
    assert_eq!(String::from_utf8(body).unwrap(), json);
    assert_eq!(header(&h, "content-type"), ["application/json"]);
    let xml = r#"<?xml version="1.0"?><order xmlns="urn:shop"><item qty="2">tea &amp; cake</item></order>"#;
    let (_, _, body) = parse(&curl(
        &gw,
        &[
            "-H",
            &a,
            "-H",
            "Content-Type: application/xml",
            "--data-binary",
            xml,
            &url(&gw, "web/echo"),
        ],
    ));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"<order xmlns="urn:shop"><item qty="2">tea &amp; cake</item></order>"#
    );

    // Status lines, HEAD and 204.
    let (status, _, body) = parse(&curl(
        &gw,
        &["-H", &a, &url(&gw, "web/status/418/I%27m%20a%20teapot")],
    ));
    assert_eq!(status, "418 I'm a teapot");
    assert_eq!(body, b"custom");
    let (status, _, _) = parse(&curl(
        &gw,
        &["-H", &a, &url(&gw, "web/status/299/Fine%20Thanks")],
    ));
    assert_eq!(status, "299 Fine Thanks");
    let (status, h, body) = parse(&curl(&gw, &["-H", &a, "-I", &url(&gw, "web/hello")]));
    assert_eq!(status, "200 OK");
    assert_eq!(header(&h, "content-length"), ["5"]);
    assert!(body.is_empty());
    let (status, _, body) = parse(&curl(&gw, &["-H", &a, &url(&gw, "web/nocontent")]));
    assert_eq!(status, "204 No Content");
    assert!(body.is_empty());
    let (status, _, _) = parse(&curl(&gw, &["-H", &a, &url(&gw, "web/nosuch")]));
    assert_eq!(status, "404 Not Found");

    // The metrics count the requests and the bytes of their bodies.
    let metrics = format!("http://{}/metrics", gw.admin.unwrap());
    let (_, _, body) = parse(&curl(&gw, &[&metrics]));
    let text = String::from_utf8(body).unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    };
    let labels = r#"namespace="localhost",entity="web",frontend="wcf_http""#;
    assert!(
        value(&format!(
            "relay_bytes_transferred_total{{{labels},direction=\"to_sender\"}}"
        )) > 0.0,
        "{text}"
    );
    assert!(
        value(&format!(
            "relay_bytes_transferred_total{{{labels},direction=\"to_listener\"}}"
        )) > 0.0,
        "{text}"
    );
    assert!(
        value(&format!(
            "relay_sender_connections_total{{{labels},outcome=\"success\"}}"
        )) >= 5.0,
        "{text}"
    );
    gw.stop_clean();
}

#[test]
fn hundred_megabyte_bodies_stream_both_ways() {
    let gw = Gateway::start("");
    let (_origin, port) = origin();
    let _fwd = forward_http(&gw, "files", port, &[]);
    let a = auth("files");
    const N: usize = 100_000_000;
    let file = gw.dir.0.join("upload.bin");
    let mut data = vec![0u8; N];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
    }
    std::fs::write(&file, &data).unwrap();
    let want = format!("{N} {:x}", Sha256::digest(&data));
    drop(data);
    let upload = format!("@{}", file.display());
    let started = Instant::now();
    let (status, _, body) = parse(&curl(
        &gw,
        &[
            "-H",
            &a,
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &upload,
            &url(&gw, "files/upload"),
        ],
    ));
    let up = started.elapsed();
    assert_eq!(status, "200 OK");
    assert_eq!(String::from_utf8(body).unwrap(), want);

    let started = Instant::now();
    let (status, _, body) = parse(&curl(
        &gw,
        &["-H", &a, &url(&gw, &format!("files/download/{N}"))],
    ));
    let down = started.elapsed();
    assert_eq!(status, "200 OK");
    assert_eq!(body.len(), N);
    assert!(body
        .iter()
        .enumerate()
        .all(|(i, b)| usize::from(*b) == i % 251));
    // Streamed, not held: the gateway's peak RSS stays far below 100 MB.
    let peak = support::status_kib(gw.pid(), "VmHWM");
    eprintln!("100 MB up {up:?}, down {down:?}; gateway peak RSS {peak} KiB");
    assert!(peak < 60 * 1024, "gateway peak RSS {peak} KiB");
    gw.stop_clean();
}

#[test]
fn the_attach_flags_decide_https_and_tokens() {
    let gw = Gateway::start("");
    let (_origin, port) = origin();
    let _secure = forward_http(&gw, "secure", port, &[]);
    let _open = forward_http(&gw, "open", port, &["--plain", "--no-client-auth"]);
    let code = |args: &[&str]| parse(&curl(&gw, args)).0[..3].to_owned();
    let plain = |rest: &str| format!("http://localhost:{}/{rest}", gw.http.port());
    assert_eq!(code(&[&url(&gw, "secure/hello")]), "401");
    let listen_only = format!(
        "ServiceBusAuthorization: {}",
        token("secure", "ListenOnly", 600)
    );
    assert_eq!(
        code(&["-H", &listen_only, &url(&gw, "secure/hello")]),
        "403"
    );
    let expired = format!("ServiceBusAuthorization: {}", token("secure", ROOT, -600));
    assert_eq!(code(&["-H", &expired, &url(&gw, "secure/hello")]), "401");
    let ok = auth("secure");
    assert!(code(&["-H", &ok, &plain("secure/hello")]).starts_with("403"));
    assert_eq!(code(&["-H", &ok, &url(&gw, "secure/hello")]), "200");
    // transport-security-required = false and client-authentication-required = false.
    assert_eq!(code(&[&plain("open/hello")]), "200");
    assert_eq!(code(&[&url(&gw, "open/hello")]), "200");
    gw.stop_clean();
}

#[test]
fn failures_get_clear_statuses_and_leave_others_working() {
    let gw = Gateway::start(
        r#"
[limits]
accept_timeout = 2
request_timeout = 3
[[wcf_relay]]
path = "configured"
type = "Http"
"#,
    );
    let a = |p: &str| auth(p);
    // A configured HTTP relay without a listener.
    let (status, _, body) = parse(&curl(
        &gw,
        &["-H", &a("configured"), &url(&gw, "configured/x")],
    ));
    assert_eq!(&status[..3], "404");
    assert!(String::from_utf8_lossy(&body).contains("No service is listening"));

    // A listener that never dials back: 504 after accept_timeout.
    let _mute = http_listener(&gw, "mute");
    let started = Instant::now();
    let (status, _, _) = parse(&curl(&gw, &["-H", &a("mute"), &url(&gw, "mute/x")]));
    assert_eq!(&status[..3], "504");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A local server slower than request_timeout: 504 too.
    let (_origin, port) = origin();
    let fwd = forward_http(&gw, "web", port, &[]);
    let (status, _, _) = parse(&curl(&gw, &["-H", &a("web"), &url(&gw, "web/slow/6")]));
    assert_eq!(&status[..3], "504");

    // The listener dies mid-reply: the client sees a cut-short body, and
    // a new listener serves the next request.
    let ca = gw.ca();
    let mut curl_big = Command::new("curl");
    curl_big
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            "--limit-rate",
            "2M",
            "--cacert",
        ])
        .arg(&ca)
        .args(["-H", &a("web"), &url(&gw, "web/download/100000000")]);
    let child = curl_big
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(fwd);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "curl noticed the cut: {text}");
    assert!(text.starts_with("200 "), "{text}");
    let _fwd = forward_http(&gw, "web", port, &[]);
    let (status, _, body) = parse(&curl(&gw, &["-H", &a("web"), &url(&gw, "web/hello")]));
    assert_eq!(
        (status.as_str(), body.as_slice()),
        ("200 OK", &b"hello"[..])
    );
    gw.stop_clean();
}

/// The reply a capture recorded (the listener's bytes after PreambleAck).
fn recorded_reply(name: &str) -> Vec<u8> {
    let path = support::root().join("fixtures/wcf/http").join(name);
    let chunks = parse_steps(&std::fs::read_to_string(path).unwrap(), "relay (fake").unwrap();
    let listener = stream(&chunks, Direction::ServerToClient);
    assert_eq!(listener[0], 0x0B);
    listener[1..].to_vec()
}

/// Play the SDK's listener for one request: take the notice, dial back,
/// acknowledge the preamble, read the request envelope, answer with the
/// recorded reply. Returns the request head and body.
fn sdk_listener(rhea: &Rhea, ca: &Path, reply: &[u8]) -> (RequestHead, Vec<u8>) {
    sdk_listener_with(rhea, ca, &[0x0B], reply).unwrap()
}

/// [`sdk_listener`] answering the preamble with `ack`; anything but
/// PreambleAck is sent and the connection closed (no request is read).
fn sdk_listener_with(
    rhea: &Rhea,
    ca: &Path,
    ack: &[u8],
    reply: &[u8],
) -> Option<(RequestHead, Vec<u8>)> {
    let n = notice(&rhea.next_message());
    let (mut s, accepted) = dial_back(&n, &tls_config(ca), "localhost", "sb://localhost/soap/");
    assert_eq!(
        accepted.action().as_deref(),
        Some(wcf::relay::ACTION_RELAYED_ACCEPT_REPLY)
    );
    let via = b"sb://localhost/soap/";
    let mut pre = [0u8; 3 + 2 + 2 + 20 + 2 + 1];
    s.read_exact(&mut pre).unwrap();
    assert_eq!(
        &pre[..5],
        [0x00, 0x01, 0x00, 0x01, 0x01],
        "singleton-unsized"
    );
    assert_eq!(&pre[5..7], [0x02, 20]);
    assert_eq!(&pre[7..27], via);
    assert_eq!(&pre[27..], [0x03, 0x07, 0x0C], "msbin1, PreambleEnd");
    s.write_all(ack).unwrap();
    if ack != [0x0B] {
        return None;
    }
    let (head, body) = read_envelope(&mut *s);
    let mut end = [0u8; 2];
    s.read_exact(&mut end).unwrap();
    assert_eq!(end, [0x00, 0x07], "the last chunk, then End");
    s.write_all(reply).unwrap();
    s.flush().unwrap();
    Some((head, body))
}

fn read_envelope(s: &mut dyn Stream) -> (RequestHead, Vec<u8>) {
    let mut incoming = Incoming::new(wcf::Limits::DEFAULT.with_max_message(1 << 20), 1 << 16);
    let mut unframe = Unframe::default();
    let mut buf = BytesMut::new();
    let (mut head, mut body) = (None, Vec::new());
    loop {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).unwrap();
        buf.extend_from_slice(&byte);
        unframe.take(&mut buf, &mut incoming).unwrap();
        while let Some(e) = incoming.next().unwrap() {
            match e {
                Event::Head(env) => head = Some(RequestHead::from_envelope(&env).unwrap()),
                Event::Data(d) => body.extend_from_slice(&d),
                Event::End => return (head.unwrap(), body),
            }
        }
    }
}

#[test]
fn recorded_sdk_replies_become_http_responses() {
    let gw = Gateway::start("");
    let rhea = http_listener(&gw, "soap");
    let a = auth("soap");
    let soap11 = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Echo xmlns="urn:relaytest"><s>hi basic</s></Echo></s:Body></s:Envelope>"#;
    let soap12 = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><Echo xmlns="urn:relaytest"><s>hi ws2007</s></Echo></s:Body></s:Envelope>"#;
    let cases: [(&str, Vec<&str>, &str, &str, BodyFormat); 4] = [
        (
            "sdk5-http-basic-wrappedsoap11.txt",
            vec!["-H", "Content-Type: text/xml; charset=utf-8", "-H", "SOAPAction: \"urn:relaytest/IBasic/Echo\"", "--data-binary", soap11],
            "200 OK",
            "EchoResult>echo:hi basic5<",
            BodyFormat::WrappedSoap11,
        ),
        (
            "sdk5-http-basic-actionless-fault.txt",
            vec!["-H", "Content-Type: text/xml; charset=utf-8", "-H", "SOAPAction: \"urn:relaytest/IBasic/Echo\"", "--data-binary", soap11],
            "500 Internal Server Error",
            "ActionNotSupported",
            BodyFormat::WrappedSoap11,
        ),
        (
            "sdk5-http-ws2007-wrappedsoap12.txt",
            vec!["-H", "Content-Type: application/soap+xml; charset=utf-8; action=\"urn:relaytest/IBasic/Echo\"", "--data-binary", soap12],
            "200 OK",
            "echo:hi ws2007",
            BodyFormat::WrappedSoap12,
        ),
        ("sdk5-http-get-404.txt", vec![], "404 Not Found", "", BodyFormat::Raw),
    ];
    for (capture, args, want_status, want_body, want_format) in cases {
        let reply = recorded_reply(capture);
        let gw_url = url(&gw, "soap/");
        let mut full = vec!["-H", a.as_str()];
        full.extend(args.iter().copied());
        full.push(&gw_url);
        let handle = curl_meanwhile(&gw, &full);
        let (head, body) = sdk_listener(&rhea, &gw.ca(), &reply);
        let out = handle.join().unwrap();
        let (status, h, resp) = parse(&out);
        assert_eq!(status, want_status, "{capture}");
        let text = String::from_utf8_lossy(&resp).into_owned();
        assert!(text.contains(want_body), "{capture}: {text}");
        assert!(
            !resp.starts_with(b"\xEF\xBB\xBF"),
            "{capture}: BOM stripped"
        );
        assert_eq!(head.format, want_format, "{capture}");
        assert!(head
            .headers
            .iter()
            .all(|(n, _)| n != "ServiceBusAuthorization"));
        assert_eq!(
            head.address, "https://localhost/soap/",
            "the port is left out: an SDK listener's base address has none"
        );
        match want_format {
            BodyFormat::WrappedSoap11 => {
                assert_eq!(header(&h, "content-type"), ["text/xml; charset=utf-8"]);
                assert!(String::from_utf8_lossy(&body).contains(
                    "<Action s:mustUnderstand=\"1\" xmlns=\"http://schemas.microsoft.com/ws/2005/05/addressing/none\">urn:relaytest/IBasic/Echo</Action>"
                ));
            }
            BodyFormat::WrappedSoap12 => assert_eq!(body, soap12.as_bytes()),
            _ => assert_eq!(head.method, "GET"),
        }
    }
    gw.stop_clean();
}

#[test]
fn mono_wcf_web_and_basic_http_services_serve_through_the_relay() {
    let gw = Gateway::start("");
    let port = free_port();
    let mut cmd = Command::new("mono");
    cmd.arg(support::peers().join("MonoWeb.exe"))
        .arg(port.to_string())
        .stdin(std::process::Stdio::piped());
    let (_mono, _, _) = spawn_ready(&mut cmd, "ready");
    let fwd = |path: &str, base: &str| {
        let uri = format!("sb://localhost/{path}");
        let to = format!("http://127.0.0.1:{port}/{base}/");
        spawn_ready(
            &mut forward(
                gw.amqps.unwrap(),
                gw.relayed.unwrap(),
                &gw.ca(),
                &["--listen", &uri, "--http", "--to", &to],
            ),
            "attached",
        )
        .0
    };
    let (_web, _basic) = (fwd("rest", "web"), fwd("soap", "basic"));
    let serialized = "http://schemas.microsoft.com/2003/10/Serialization/";

    // WebGet with a path parameter and a query.
    let (status, h, body) = parse(&curl(
        &gw,
        &["-H", &auth("rest"), &url(&gw, "rest/hello/world?x=1")],
    ));
    assert_eq!(status, "200 OK");
    assert_eq!(
        header(&h, "content-type"),
        ["application/xml; charset=utf-8"]
    );
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!(r#"<string xmlns="{serialized}">hello world x=1</string>"#)
    );
    // WebInvoke POST of XML, answered 201 with the service's description.
    let xml = format!(r#"<string xmlns="{serialized}">hi</string>"#);
    let (status, _, body) = parse(&curl(
        &gw,
        &[
            "-H",
            &auth("rest"),
            "-H",
            "Content-Type: application/xml",
            "--data-binary",
            &xml,
            &url(&gw, "rest/echo"),
        ],
    ));
    assert_eq!(status, "201 made it");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!(r#"<string xmlns="{serialized}">echo:hi</string>"#)
    );
    // A SOAP 1.1 call: dispatched by its SOAPAction (inject-soap11-action).
    let soap = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Echo xmlns="urn:relaytest"><s>hi basic</s></Echo></s:Body></s:Envelope>"#;
    let (status, h, body) = parse(&curl(
        &gw,
        &[
            "-H",
            &auth("soap"),
            "-H",
            "Content-Type: text/xml; charset=utf-8",
            "-H",
            "SOAPAction: \"urn:relaytest/IBasic/Echo\"",
            "--data-binary",
            soap,
            &url(&gw, "soap/"),
        ],
    ));
    assert_eq!(status, "200 OK");
    assert_eq!(header(&h, "content-type"), ["text/xml; charset=utf-8"]);
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("<EchoResult>echo:hi basic</EchoResult>"));
    gw.stop_clean();
}

#[test]
fn malformed_replies_are_bad_gateway_and_leak_nothing() {
    let gw = Gateway::start("");
    let rhea = http_listener(&gw, "soap");
    let a = auth("soap");
    let good = recorded_reply("sdk5-http-get-404.txt");
    let bad_status = {
        let env = wcf::soap::Envelope::with_action("GETResponse").header(
            wcf::soap::Element::new("", "StatusCode", wcf::web::NS_STATUS)
                .with_xmlns("", wcf::web::NS_STATUS)
                .text("abc"),
        );
        let mut doc = wcf::web::open_envelope(&env).unwrap();
        wcf::web::BodyWriter::new(BodyFormat::Raw).finish(&mut doc);
        let mut out = vec![0x05];
        wcf::web::chunk(&doc, &mut out);
        out.extend_from_slice(&[0x00, 0x07]);
        out
    };
    let mut fault = vec![0x08, 0x10];
    fault.extend_from_slice(b"bad preamble ...");
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "garbage instead of an envelope",
            vec![0x0B],
            b"\xff\xfe garbage".to_vec(),
        ),
        ("a framing fault instead of PreambleAck", fault, Vec::new()),
        (
            "a cut-short envelope",
            vec![0x0B],
            good[..good.len() / 2].to_vec(),
        ),
        (
            "an envelope that is not binary XML",
            vec![0x0B],
            vec![0x05, 0x04, 0x40, 0xff, 0xff, 0xff, 0x00, 0x07],
        ),
        ("a StatusCode that is no number", vec![0x0B], bad_status),
    ];
    let before = support::open_fds(gw.pid());
    for (what, ack, reply) in cases {
        let handle = curl_meanwhile(&gw, &["-H", &a, &url(&gw, "soap/x")]);
        let _ = sdk_listener_with(&rhea, &gw.ca(), &ack, &reply);
        let out = handle.join().unwrap();
        let (status, _, body) = parse(&out);
        assert_eq!(
            &status[..3],
            "502",
            "{what}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = support::open_fds(gw.pid());
    assert!(
        after <= before + 1,
        "descriptors: {before} before, {after} after"
    );
    gw.stop_clean();
}

#[test]
fn inject_soap11_action_can_be_turned_off_per_relay() {
    let gw = Gateway::start(
        r#"
[[wcf_relay]]
path = "soap"
type = "Http"
inject_soap11_action = false
"#,
    );
    let rhea = http_listener(&gw, "soap");
    let soap11 = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Echo xmlns="urn:relaytest"><s>hi</s></Echo></s:Body></s:Envelope>"#;
    let (a, gw_url) = (auth("soap"), url(&gw, "soap/"));
    let handle = curl_meanwhile(
        &gw,
        &[
            "-H",
            &a,
            "-H",
            "Content-Type: text/xml; charset=utf-8",
            "-H",
            "SOAPAction: \"urn:relaytest/IBasic/Echo\"",
            "--data-binary",
            soap11,
            &gw_url,
        ],
    );
    let reply = recorded_reply("sdk5-http-basic-wrappedsoap11.txt");
    let (head, body) = sdk_listener(&rhea, &gw.ca(), &reply);
    assert_eq!(parse(&handle.join().unwrap()).0, "200 OK");
    assert_eq!(head.format, BodyFormat::WrappedSoap11);
    assert_eq!(body, soap11.as_bytes(), "the envelope passes untouched");
    assert!(head
        .headers
        .iter()
        .any(|(n, v)| n == "SOAPAction" && v == "\"urn:relaytest/IBasic/Echo\""));
    gw.stop_clean();
}

/// A reply the listener cuts short is never passed on as a complete
/// response: cut inside its head (502), in the middle of its body, and
/// after every body byte but before its end records (the client's chunked
/// response then ends without its last chunk, and curl fails).
#[test]
fn a_reply_cut_by_the_listener_is_never_a_complete_response() {
    let gw = Gateway::start("");
    let rhea = http_listener(&gw, "soap");
    let a = auth("soap");
    let head = wcf::web::ReplyHead {
        action: Some("GETResponse".into()),
        status: Some(200),
        reason: None,
        headers: vec![("Content-Type".into(), "application/octet-stream".into())],
        format: Some(BodyFormat::Raw),
    };
    let doc = wcf::web::open_envelope(&head.to_envelope()).unwrap();
    let mut start = vec![0x05];
    wcf::web::chunk(&doc, &mut start);
    let mut body = Vec::new();
    let mut writer = wcf::web::BodyWriter::new(BodyFormat::Raw);
    writer.data_chunk(&[b'x'; 5000], &mut body);
    let whole_body = [start.clone(), body.clone()].concat();
    let cases: [(&str, Vec<u8>); 3] = [
        ("inside the head", start[..start.len() / 2].to_vec()),
        (
            "mid-body",
            whole_body[..start.len() + body.len() / 2].to_vec(),
        ),
        ("before the end records", whole_body.clone()),
    ];
    for (what, reply) in cases {
        let handle = curl_meanwhile(&gw, &["-H", &a, &url(&gw, "soap/x")]);
        let _ = sdk_listener(&rhea, &gw.ca(), &reply);
        let out = handle.join().unwrap();
        // curl fails (the connection aborted), or the status is not 200.
        if out.status.success() {
            let (status, _, _) = parse(&out);
            assert!(
                !status.starts_with("200"),
                "{what}: a complete-looking {status} response"
            );
        } else {
            eprintln!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    // The same reply with its end is whole.
    let mut ended = whole_body;
    writer.finish_framed(&mut ended);
    let handle = curl_meanwhile(&gw, &["-H", &a, &url(&gw, "soap/x")]);
    let _ = sdk_listener(&rhea, &gw.ca(), &ended);
    let out = handle.join().unwrap();
    let (status, _, got) = parse(&out);
    assert!(
        out.status.success() && status.starts_with("200"),
        "{status}"
    );
    assert_eq!(got, vec![b'x'; 5000]);
    gw.stop_clean();
}
