//! `forward --listen --http`: an HTTP relay listener (`wcf/PROTOCOL.md`
//! §11.3) that puts any local web server where a WebHttpRelayBinding
//! service would be. It registers as `RelayedHttp`; for each notice it
//! dials back, serves the gateway's NMF exchange (singleton-unsized msbin1,
//! one unsized envelope each way) as the SDK's listener does, and turns the
//! relayed request into a plain HTTP/1.1 request to `--to`, streaming both
//! bodies. Replies always use `BodyFormat` `Raw`, which carries any bytes
//! exactly; the status travels as `StatusCode` and a non-standard reason
//! phrase as `FaultReason`.
//!
//! The local URL is `--to`'s path followed by the request's path below the
//! relay's, and its query; `Host` becomes the local server's authority and
//! the original goes in `X-Forwarded-Host`.

use anyhow::{anyhow, Context};
use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;
use wcf::framing::preamble::{Encoding, PreambleConfig, ServerPreamble, Step};
use wcf::framing::{Decoder, Mode, Record};
use wcf::web::{self, BodyFormat, BodyWriter, Event, Incoming, ReplyHead, RequestHead, Unframe};

use super::listen::{dial_back, listen as attach_and_serve};
use super::Relay;
use crate::transport::http::{self as reply, BodyPart, BodyRx, BodyTx};
use crate::transport::http::{HOP_BY_HOP, RESPONSE_HOP_BY_HOP};
use crate::transport::stream::BoxIo;

/// Largest piece of a body written as one NMF chunk.
const CHUNK: usize = 64 * 1024;
/// Bound on a request envelope's head.
const MAX_HEAD: usize = 256 * 1024;
/// Seconds a body (or the gateway) may stall.
const IDLE: u64 = 60;
/// Seconds the local server has to start its answer (the gateway's own
/// `request_timeout` usually ends the wait sooner).
const LOCAL_ANSWER: u64 = 300;

/// The local web server: its authority and base path.
#[derive(Clone)]
pub struct Target {
    authority: String,
    base: String,
}

impl Target {
    /// The base path under which relayed paths go.
    pub fn base(&self) -> &str {
        &self.base
    }
}

/// The local web server of `--to` (an `http://` URL).
pub fn target(to: &str) -> anyhow::Result<Target> {
    let rest = to
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--to must be an http:// URL with --http, not {to}"))?;
    let (authority, base) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(anyhow!("--to names no host: {to}"));
    }
    Ok(Target {
        authority: authority.to_owned(),
        base: base.trim_matches('/').to_owned(),
    })
}

/// Listen until interrupted or refused for good.
pub async fn listen(relay: Relay, to: &str) -> anyhow::Result<()> {
    let target = target(to)?;
    attach_and_serve(relay, "RelayedHttp", move |relay, data| {
        let target = target.clone();
        async move { request(&relay, &target, &data).await }
    })
    .await
}

/// The local path and query for a relayed address: what follows the
/// relay's path, under the target's base path.
pub fn local_path(relay_path: &str, address: &str, base: &str) -> String {
    let after_scheme = address.split_once("://").map_or(address, |(_, r)| r);
    let path_query = after_scheme
        .find('/')
        .and_then(|i| after_scheme.get(i + 1..))
        .unwrap_or("");
    let below = path_query
        .get(..relay_path.len())
        .filter(|p| p.eq_ignore_ascii_case(relay_path))
        .and_then(|_| path_query.get(relay_path.len()..))
        .unwrap_or(path_query)
        .trim_start_matches('/');
    match (base.is_empty(), below.is_empty()) {
        (true, _) => format!("/{below}"),
        (false, true) => format!("/{base}/"),
        (false, false) => format!("/{base}/{below}"),
    }
}

async fn request(relay: &Relay, target: &Target, data: &[u8]) -> anyhow::Result<()> {
    let conn = dial_back(relay, data).await?;
    let (mut rd, mut wr) = tokio::io::split(conn.into_io());
    let buf = preamble(&mut rd, &mut wr).await?;
    let (head_tx, head_rx) = oneshot::channel();
    let (body_tx, body_rx) = mpsc::channel(8);
    let reader = tokio::spawn(read_request(rd, buf, head_tx, body_tx));
    let head = head_rx
        .await
        .map_err(|_| anyhow!("the request ended before its head"))??;
    let method = head.method.clone();
    let result = call(relay, target, head, body_rx).await;
    let reply = match result {
        Ok(r) => r,
        Err(e) => {
            debug!(error = %e, "local server failed");
            bad_gateway(&method, &e.to_string())
        }
    };
    let r = send_reply(&mut wr, reply).await;
    reader.abort();
    let _ = wr.shutdown().await;
    r
}

/// Serve the NMF preamble (singleton-unsized, msbin1 only); returns what
/// was read past PreambleEnd.
async fn preamble(rd: &mut ReadHalf<BoxIo>, wr: &mut WriteHalf<BoxIo>) -> anyhow::Result<BytesMut> {
    let mut decoder = Decoder::new(wcf::Limits::DEFAULT);
    let mut machine = ServerPreamble::new(PreambleConfig {
        modes: vec![Mode::SingletonUnsized],
        encodings: vec![Encoding::Known(web::ENCODING_MSBIN1)],
        upgrades: Vec::new(),
    });
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let at = decoder.offset();
        match decoder.decode(&mut buf) {
            Ok(Some(record)) => match machine.feed(&record, at) {
                Ok(Step::Complete(_)) => {
                    wr.write_all(&[0x0B]).await?;
                    wr.flush().await?;
                    return Ok(buf);
                }
                Ok(Step::Continue) => continue,
                Ok(Step::Upgrade(_)) => return Err(anyhow!("no upgrades here")),
                Err(wcf::Error::Framing { fault, message, .. }) => {
                    let mut out = Vec::new();
                    Record::Fault(fault.uri().to_owned()).encode(&mut out);
                    wr.write_all(&out).await?;
                    return Err(anyhow!("refused the gateway's preamble: {message}"));
                }
                Err(e) => return Err(e.into()),
            },
            Ok(None) => {}
            Err(e) => return Err(e.into()),
        }
        if read_some(rd, &mut buf).await? == 0 {
            return Err(anyhow!("the gateway closed during the preamble"));
        }
    }
}

/// Read more from the gateway, failing after [`IDLE`] seconds of silence.
async fn read_some(rd: &mut ReadHalf<BoxIo>, buf: &mut BytesMut) -> anyhow::Result<usize> {
    tokio::time::timeout(std::time::Duration::from_secs(IDLE), rd.read_buf(buf))
        .await
        .map_err(|_| anyhow!("the gateway went quiet"))?
        .map_err(Into::into)
}

type HeadTx = oneshot::Sender<anyhow::Result<RequestHead>>;

/// Read the request envelope: its head to `head_tx`, its body to `body_tx`.
async fn read_request(
    mut rd: ReadHalf<BoxIo>,
    mut buf: BytesMut,
    head_tx: HeadTx,
    body_tx: BodyTx,
) {
    let mut head_tx = Some(head_tx);
    let mut incoming = Incoming::new(wcf::Limits::DEFAULT.with_max_message(64 << 20), MAX_HEAD);
    let mut unframe = Unframe::default();
    let r: anyhow::Result<()> = async {
        loop {
            let before = buf.len();
            unframe.take(&mut buf, &mut incoming)?;
            while let Some(event) = incoming.next()? {
                match event {
                    Event::Head(env) => {
                        let head = RequestHead::from_envelope(&env)?;
                        if let Some(tx) = head_tx.take() {
                            let _ = tx.send(Ok(head));
                        }
                    }
                    Event::Data(d) => {
                        if body_tx.send(Ok(BodyPart::Data(d))).await.is_err() {
                            return Ok(());
                        }
                    }
                    Event::End => {
                        let _ = body_tx.send(Ok(BodyPart::End)).await;
                        return Ok(());
                    }
                }
            }
            if buf.len() == before || buf.is_empty() {
                buf.reserve(CHUNK);
                if read_some(&mut rd, &mut buf).await? == 0 {
                    return Err(anyhow!("the gateway closed mid-request"));
                }
            }
        }
    }
    .await;
    if let Err(e) = r {
        match head_tx.take() {
            Some(tx) => {
                let _ = tx.send(Err(e));
            }
            None => {
                let _ = body_tx
                    .send(Err(std::io::Error::other(e.to_string())))
                    .await;
            }
        }
    }
}

/// A reply to send: head and body.
type Reply = (ReplyHead, Option<hyper::body::Incoming>);

fn bad_gateway(method: &str, why: &str) -> (ReplyHead, Option<hyper::body::Incoming>) {
    (
        ReplyHead {
            action: Some(format!("{method}Response")),
            status: Some(502),
            reason: Some(format!("the local server failed: {why}")),
            headers: Vec::new(),
            format: Some(BodyFormat::Raw),
        },
        None,
    )
}

/// Make the request to the local server.
async fn call(
    relay: &Relay,
    target: &Target,
    head: RequestHead,
    body: BodyRx,
) -> anyhow::Result<Reply> {
    let path = local_path(&relay.path, &head.address, &target.base);
    let answer = local_call(target, &head.method, path, &head.headers, body).await?;
    let headers = answer
        .headers
        .into_iter()
        .map(|(n, v)| (web::title_case(&n), v))
        .collect();
    Ok((
        ReplyHead {
            action: Some(format!("{}Response", head.method)),
            status: Some(answer.status),
            reason: answer.reason,
            headers,
            format: Some(BodyFormat::Raw),
        },
        Some(answer.body),
    ))
}

/// What the local server answered.
pub struct LocalAnswer {
    /// The status code.
    pub status: u16,
    /// A reason phrase, when the server sent one.
    pub reason: Option<String>,
    /// Headers (lower-case names, hop-by-hop ones dropped but for
    /// `content-length`).
    pub headers: Vec<(String, String)>,
    /// The body, as it arrives.
    pub body: hyper::body::Incoming,
}

/// One request to the local web server at `target`: `Host` becomes its
/// authority and the relayed one goes in `X-Forwarded-Host`; hop-by-hop
/// headers are dropped; a body that ends within 1 MiB goes with its length.
pub async fn local_call(
    target: &Target,
    method: &str,
    path: String,
    headers: &[(String, String)],
    body: BodyRx,
) -> anyhow::Result<LocalAnswer> {
    let (body, len) = local_body(body).await?;
    let mut req = hyper::Request::builder().method(method).uri(path);
    let mut forwarded_host = None;
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if lower == "host" {
            forwarded_host = Some(value.clone());
            continue;
        }
        if HOP_BY_HOP.contains(&lower.as_str()) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            req = req.header(n, v);
        }
    }
    req = req.header(hyper::header::HOST, target.authority.as_str());
    if let Some(h) = forwarded_host {
        req = req.header("X-Forwarded-Host", h);
    }
    let bodiless = matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS");
    if let Some(n) = len.filter(|n| *n > 0 || !bodiless) {
        req = req.header(hyper::header::CONTENT_LENGTH, n);
    }
    let req = req.body(body)?;
    let tcp = TcpStream::connect(&target.authority)
        .await
        .with_context(|| format!("connecting to {}", target.authority))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "local connection ended with an error");
        }
    });
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(LOCAL_ANSWER),
        sender.send_request(req),
    )
    .await
    .map_err(|_| anyhow!("the local server did not answer in {LOCAL_ANSWER} s"))??;
    let (parts, body) = resp.into_parts();
    let reason = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .filter(|r| !r.is_empty());
    let headers = parts
        .headers
        .iter()
        .filter(|(n, _)| {
            !RESPONSE_HOP_BY_HOP.contains(&n.as_str()) || n.as_str() == "content-length"
        })
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(LocalAnswer {
        status: parts.status.as_u16(),
        reason,
        headers,
        body,
    })
}

/// The body for the local server: whole with its length when it ends
/// within 1 MiB (local servers that cannot read chunked requests then still
/// work), else streamed.
async fn local_body(mut rx: BodyRx) -> anyhow::Result<(reply::Body, Option<usize>)> {
    let mut held = BytesMut::new();
    while held.len() <= CHUNK * 16 {
        match rx.recv().await {
            Some(Ok(BodyPart::Data(d))) => held.extend_from_slice(&d),
            Some(Ok(BodyPart::End)) => {
                let n = held.len();
                return Ok((reply::full(held.freeze()), Some(n)));
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err(reply::cut().into()),
        }
    }
    let (tx, rest) = mpsc::channel(8);
    tokio::spawn(async move {
        if tx.send(Ok(BodyPart::Data(held.freeze()))).await.is_err() {
            return;
        }
        while let Some(d) = rx.recv().await {
            if tx.send(d).await.is_err() {
                return;
            }
        }
    });
    Ok((
        reply::channel_body(rest, std::time::Duration::from_secs(IDLE), |_| {}),
        None,
    ))
}

/// Write the reply envelope, streaming the body, then End.
async fn send_reply(wr: &mut WriteHalf<BoxIo>, (head, body): Reply) -> anyhow::Result<()> {
    let mut out = vec![0x05];
    web::chunk(&web::open_envelope(&head.to_envelope())?, &mut out);
    let mut writer = BodyWriter::new(BodyFormat::Raw);
    if let Some(mut body) = body {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            for piece in data.chunks(CHUNK) {
                writer.data_chunk(piece, &mut out);
                wr.write_all(&out).await?;
                out.clear();
            }
        }
    }
    writer.finish_framed(&mut out);
    wr.write_all(&out).await?;
    wr.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_keep_what_follows_the_relay_path() {
        let a = "https://ns:9443/web/hello/world?x=1";
        assert_eq!(local_path("web", a, ""), "/hello/world?x=1");
        assert_eq!(local_path("web", a, "app"), "/app/hello/world?x=1");
        assert_eq!(local_path("web", "http://ns/web", ""), "/");
        assert_eq!(local_path("web", "http://ns/web?q", "app"), "/app/?q");
        assert_eq!(local_path("a/b", "http://ns/A/b/c", ""), "/c");
    }
}
