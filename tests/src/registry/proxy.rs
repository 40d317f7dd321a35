//! A fault-injecting HTTP proxy in front of a plain-HTTP registry, for the resume, retry and
//! corruption tests: clients talk to `proxy.host()` as if it were the registry.
//!
//! Knobs: cut the first response for a blob after N body bytes ([`FaultProxy::cut_blob_once`]),
//! or stall it there for a while first ([`FaultProxy::stall_blob_once`]), send blob GETs to
//! "object storage" with a 307 as S3-backed registries do ([`FaultProxy::redirect_blobs`]),
//! answer blob GETs 503 K times ([`FaultProxy::fail_blob_gets`]), flip a byte of a blob's body
//! ([`FaultProxy::corrupt_blob`]). Counters: blob GETs, body bytes sent, every request.
//!
//! The server side is our own (std sockets, `httparse` for the request head) because a cut must
//! close the socket after exactly N body bytes, which an HTTP server crate does not allow; the
//! upstream side is ureq. Each connection serves one request and closes (`Connection: close`),
//! which every HTTP/1.1 client handles, and which makes a body without a length well framed.
//! Request headers go upstream unchanged (`Range` and `Authorization` included) but for `Host`
//! and hop-by-hop ones; answers (206 included) come back as they are, `Location` pointed at the
//! proxy.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request the proxy answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRequest {
    pub method: String,
    /// Path and query, e.g. `/v2/busybox/blobs/sha256:…`.
    pub path: String,
    /// The `Range` header the client sent, if any.
    pub range: Option<String>,
    /// The blob digest for a blob request.
    pub digest: Option<String>,
    /// The status sent to the client (the injected 503 included).
    pub status: u16,
    /// Body bytes sent to the client.
    pub body_bytes: u64,
    /// Whether the proxy cut this response short.
    pub cut: bool,
    /// Whether the client sent an `Authorization` header.
    pub authorization: bool,
}

#[derive(Default)]
struct Faults {
    /// (digest, body bytes to send before closing, silence before closing), taken by the first
    /// answer for that blob.
    cut: Option<(String, u64, Duration)>,
    /// Blob GETs still to answer 503.
    fail_blob_gets: usize,
    corrupt: HashSet<String>,
    /// Registry storage root whose blob files `/storage/sha256:HEX` serves, once blob GETs are
    /// redirected there.
    redirect: Option<PathBuf>,
}

#[derive(Default)]
struct State {
    faults: Mutex<Faults>,
    blob_gets: AtomicUsize,
    body_bytes: AtomicU64,
    log: Mutex<Vec<ProxiedRequest>>,
}

/// The proxy, listening on `127.0.0.1:0`; stops accepting on drop.
pub struct FaultProxy {
    host: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl FaultProxy {
    /// A proxy forwarding to the plain-HTTP registry at `upstream_host` (`127.0.0.1:PORT`).
    pub fn start(upstream_host: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            let upstream = upstream_host.to_owned();
            let me = host.clone();
            std::thread::spawn(move || {
                let agent = super::plain_agent();
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, agent, upstream, me) =
                        (state.clone(), agent.clone(), upstream.clone(), me.clone());
                    std::thread::spawn(move || {
                        let _ = serve(conn, &state, &agent, &upstream, &me);
                    });
                }
            })
        };
        FaultProxy {
            host,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, to use in place of the registry's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The first answer (200 or 206) for blob `digest` from now on sends its headers (full
    /// `Content-Length`) and `after_bytes` body bytes, then closes the connection. Once.
    pub fn cut_blob_once(&self, digest: &str, after_bytes: u64) {
        self.state.faults.lock().unwrap().cut = Some((digest.into(), after_bytes, Duration::ZERO));
    }

    /// As [`FaultProxy::cut_blob_once`], but the connection then stays open and silent for
    /// `silence` before it closes: a client with a shorter read timeout gives up first.
    pub fn stall_blob_once(&self, digest: &str, after_bytes: u64, silence: Duration) {
        self.state.faults.lock().unwrap().cut = Some((digest.into(), after_bytes, silence));
    }

    /// The next `times` blob GETs are answered `503 Service Unavailable` with `Retry-After: 0`
    /// and a registry `UNAVAILABLE` error body, without reaching the registry.
    pub fn fail_blob_gets(&self, times: usize) {
        self.state.faults.lock().unwrap().fail_blob_gets = times;
    }

    /// Every body sent for blob `digest` from now on has its first byte flipped (XOR 0xff): a
    /// full download no longer matches the digest, nor does a range starting anywhere.
    pub fn corrupt_blob(&self, digest: &str) {
        self.state
            .faults
            .lock()
            .unwrap()
            .corrupt
            .insert(digest.into());
    }

    /// Blob GETs from now on are answered `307 Temporary Redirect` to a signed-looking URL on
    /// another host name (`localhost:PORT/storage/DIGEST?X-Amz-Signature=…`), which this proxy
    /// serves from the registry's filesystem storage `storage_root`, as an S3-backed registry
    /// sends clients to the bucket. [`ProxiedRequest::authorization`] tells whether a client
    /// leaked its registry credentials to the storage.
    pub fn redirect_blobs(&self, storage_root: &std::path::Path) {
        self.state.faults.lock().unwrap().redirect = Some(storage_root.to_path_buf());
    }

    /// Removes every fault not yet triggered.
    pub fn clear_faults(&self) {
        *self.state.faults.lock().unwrap() = Faults::default();
    }

    /// Blob GETs received (the injected 503s included).
    pub fn blob_gets(&self) -> usize {
        self.state.blob_gets.load(Ordering::SeqCst)
    }

    /// Blob GETs received for `digest`.
    pub fn blob_gets_of(&self, digest: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.digest.as_deref() == Some(digest))
            .count()
    }

    /// Body bytes sent to clients, all requests together.
    pub fn body_bytes(&self) -> u64 {
        self.state.body_bytes.load(Ordering::SeqCst)
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(&self.host);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The request head and body as read from the client.
struct Incoming {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Incoming {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(conn: &mut BufReader<TcpStream>) -> std::io::Result<Incoming> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read_until(b'\n', &mut head)? == 0 || head.len() > 64 << 10 {
            return Err(bad("incomplete request head"));
        }
    }
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut rq = httparse::Request::new(&mut hs);
    rq.parse(&head).map_err(|e| bad(&e.to_string()))?;
    let mut incoming = Incoming {
        method: rq.method.unwrap_or("GET").into(),
        path: rq.path.unwrap_or("/").into(),
        headers: rq
            .headers
            .iter()
            .map(|h| (h.name.into(), String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
        body: Vec::new(),
    };
    if incoming
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        conn.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if incoming
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        // Pushes stream layers chunked: `SIZE-IN-HEX[;ext]\r\nDATA\r\n` … `0\r\n[trailers]\r\n`.
        loop {
            let mut line = String::new();
            conn.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                while !matches!(conn.read_line(&mut line)?, 0 | 2) {
                    line.clear();
                }
                break;
            }
            let start = incoming.body.len();
            incoming.body.resize(start + size, 0);
            conn.read_exact(&mut incoming.body[start..])?;
            conn.read_line(&mut line)?;
        }
    } else if let Some(n) = incoming.header("content-length") {
        let n: usize = n.trim().parse().map_err(|_| bad("bad content-length"))?;
        incoming.body.resize(n, 0);
        conn.read_exact(&mut incoming.body)?;
    }
    Ok(incoming)
}

/// `GET /storage/sha256:HEX?…`: the blob file from the registry's filesystem storage, whole.
fn serve_storage(
    mut out: TcpStream,
    state: &State,
    mut entry: ProxiedRequest,
    root: &std::path::Path,
    digest: &str,
) -> std::io::Result<()> {
    let hex = digest
        .split('?')
        .next()
        .unwrap_or("")
        .trim_start_matches("sha256:");
    let path = root
        .join("docker/registry/v2/blobs/sha256")
        .join(hex.get(..2).unwrap_or("xx"))
        .join(hex)
        .join("data");
    let body = std::fs::read(path).unwrap_or_default();
    entry.status = if body.is_empty() { 404 } else { 200 };
    entry.body_bytes = body.len() as u64;
    state
        .body_bytes
        .fetch_add(body.len() as u64, Ordering::SeqCst);
    state.log.lock().unwrap().push(entry.clone());
    write!(
        out,
        "HTTP/1.1 {} X\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        entry.status,
        body.len()
    )?;
    out.write_all(&body)?;
    out.flush()?;
    out.shutdown(Shutdown::Both)
}

/// `sha256:HEX` out of `/v2/NAME/blobs/sha256:HEX[?…]`.
fn blob_digest(path: &str) -> Option<String> {
    let (_, rest) = path.split_once("/blobs/")?;
    let digest = rest.split(['?', '/']).next()?;
    digest.contains(':').then(|| digest.to_owned())
}

fn serve(
    conn: TcpStream,
    state: &State,
    agent: &ureq::Agent,
    upstream: &str,
    me: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    // Clients told to skip TLS verification try HTTPS first; like the registry (Go's server),
    // answer a TLS ClientHello (record type 0x16) at once with a plain 400 so they fall back to
    // HTTP, rather than leave them waiting out their handshake timeout.
    if reader.fill_buf()?.first() == Some(&0x16) {
        out.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        )?;
        return out.shutdown(Shutdown::Both);
    }
    let rq = match read_request(&mut reader) {
        Ok(rq) => rq,
        Err(e) => {
            let _ = write!(out, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
            let _ = out.shutdown(Shutdown::Both);
            return Err(e);
        }
    };
    let digest = blob_digest(&rq.path);
    let mut entry = ProxiedRequest {
        method: rq.method.clone(),
        path: rq.path.clone(),
        range: rq.header("range").map(String::from),
        digest: digest.clone(),
        status: 0,
        body_bytes: 0,
        cut: false,
        authorization: rq.header("authorization").is_some(),
    };
    let redirect = state.faults.lock().unwrap().redirect.clone();
    if let (Some(root), Some(d)) = (&redirect, rq.path.strip_prefix("/storage/")) {
        return serve_storage(out, state, entry, root, d);
    }
    let blob_get = rq.method == "GET" && digest.is_some();
    if let (true, Some(_), Some(d)) = (blob_get, &redirect, &digest) {
        let port = me.rsplit(':').next().unwrap_or("0");
        entry.status = 307;
        state.blob_gets.fetch_add(1, Ordering::SeqCst);
        state.log.lock().unwrap().push(entry);
        write!(
            out,
            "HTTP/1.1 307 Temporary Redirect\r\n\
             Location: http://localhost:{port}/storage/{d}?X-Amz-Signature=o2b-test\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return out.shutdown(Shutdown::Both);
    }
    if blob_get {
        state.blob_gets.fetch_add(1, Ordering::SeqCst);
        let fail = {
            let mut f = state.faults.lock().unwrap();
            let fail = f.fail_blob_gets > 0;
            f.fail_blob_gets = f.fail_blob_gets.saturating_sub(1);
            fail
        };
        if fail {
            let body =
                r#"{"errors":[{"code":"UNAVAILABLE","message":"service unavailable (injected)"}]}"#;
            state
                .body_bytes
                .fetch_add(body.len() as u64, Ordering::SeqCst);
            entry.status = 503;
            entry.body_bytes = body.len() as u64;
            // Logged before answering: a client that has its answer finds it counted.
            state.log.lock().unwrap().push(entry);
            write!(
                out,
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )?;
            return out.shutdown(Shutdown::Both);
        }
    }

    let mut up = ureq::http::Request::builder()
        .method(rq.method.as_str())
        .uri(format!("http://{upstream}{}", rq.path));
    for (k, v) in &rq.headers {
        let lk = k.to_ascii_lowercase();
        if !HOP_BY_HOP.contains(&lk.as_str())
            && !matches!(lk.as_str(), "host" | "content-length" | "expect")
        {
            up = up.header(k.as_str(), v.as_str());
        }
    }
    let resp = if rq.body.is_empty() && matches!(rq.method.as_str(), "GET" | "HEAD" | "DELETE") {
        agent.run(up.body(()).unwrap())
    } else {
        agent.run(up.body(rq.body).unwrap())
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            let body = format!("proxy: upstream {upstream}: {e}");
            entry.status = 502;
            state.log.lock().unwrap().push(entry);
            write!(
                out,
                "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return out.shutdown(Shutdown::Both);
        }
    };
    let status = resp.status();
    entry.status = status.as_u16();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (k, v) in resp.headers() {
        if HOP_BY_HOP.contains(&k.as_str()) {
            continue;
        }
        let v = String::from_utf8_lossy(v.as_bytes());
        // Upload sessions answer with absolute URLs built from the Host we sent.
        let v = if k == "location" {
            v.replace(upstream, me)
        } else {
            v.into_owned()
        };
        head += &format!("{k}: {v}\r\n");
    }
    head += "Connection: close\r\n\r\n";
    out.write_all(head.as_bytes())?;

    let body_ok = blob_get && matches!(status.as_u16(), 200 | 206);
    let (mut cut_after, silence, corrupt) = {
        let mut f = state.faults.lock().unwrap();
        let (cut, silence) = match &f.cut {
            Some((d, n, silence)) if body_ok && digest.as_ref() == Some(d) => {
                let (n, silence) = (*n, *silence);
                f.cut = None;
                (Some(n), silence)
            }
            _ => (None, Duration::ZERO),
        };
        let corrupt = body_ok && digest.as_ref().is_some_and(|d| f.corrupt.contains(d));
        (cut, silence, corrupt)
    };
    entry.cut = cut_after.is_some();
    // Logged before the body goes out, its byte count kept up to date ahead of each write: a
    // client that has its answer finds it counted.
    let idx = {
        let mut log = state.log.lock().unwrap();
        log.push(entry);
        log.len() - 1
    };
    if rq.method != "HEAD" {
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 64 << 10];
        let mut first = true;
        loop {
            let mut n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if first && corrupt {
                buf[0] ^= 0xff;
            }
            first = false;
            if let Some(left) = cut_after {
                n = n.min(left as usize);
                cut_after = Some(left - n as u64);
            }
            state.log.lock().unwrap()[idx].body_bytes += n as u64;
            state.body_bytes.fetch_add(n as u64, Ordering::SeqCst);
            out.write_all(&buf[..n])?;
            if cut_after == Some(0) {
                out.flush()?;
                std::thread::sleep(silence);
                break;
            }
        }
    }
    out.flush()?;
    // A cut closes with the body short of its Content-Length; the client sees an unexpected EOF.
    out.shutdown(Shutdown::Both)
}
