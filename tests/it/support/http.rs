//! The one raw HTTP/1.1 client of the tests, over `std::net`.
//!
//! Raw sockets on purpose: the abuse, malformed-HTTP and crash suites need to
//! write bytes no well-behaved client would, read exactly what the server
//! sent (framing included), and see a closed or reset connection as an
//! outcome. Everything here panics only where a caller asks for an answer
//! that must exist ([`send`]); the parsing functions return `None` on an
//! incomplete response.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A whole response.
pub struct Reply {
    pub status: u16,
    /// The status line and the header lines, without the blank line.
    pub head: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Data chunks received, when the body was chunked (0 otherwise).
    pub chunks: usize,
}

impl Reply {
    /// The first header called `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (showing the answer) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not a JSON body ({e}): {}\n{}",
                self.head,
                self.text().chars().take(2000).collect::<String>()
            )
        })
    }

    /// The body as JSON, or `Null` when it is not JSON.
    pub fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The problem kind (`type` without the URL prefix), or "".
    pub fn kind(&self) -> String {
        problem_kind(&self.json_or_null()).to_string()
    }
}

/// A problem's `type` without the URL prefix, or "".
pub fn problem_kind(v: &Value) -> &str {
    v["type"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("https://stele.dev/problems/")
}

/// The first header called `name` in a response head (case-insensitive).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one complete response at the start of `raw`: a chunked body must
/// have its last chunk, a `Content-Length` body all its bytes (`None`
/// otherwise); a body with neither is everything after the head (the server
/// closed the connection to end it).
pub fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let rest = &raw[end + 4..];
    let chunked =
        header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let (body, chunks) = if chunked {
        dechunk(rest)?
    } else {
        match header(&head, "content-length") {
            Some(n) => {
                let n: usize = n.parse().ok()?;
                (rest.get(..n)?.to_vec(), 0)
            }
            None => (rest.to_vec(), 0),
        }
    };
    Some(Reply {
        status,
        head,
        body,
        chunks,
    })
}

/// The body of a complete chunked message and its number of data chunks;
/// `None` while the last chunk has not arrived.
pub fn dechunk(mut rest: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut chunks = 0;
    loop {
        let eol = find(rest, b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some((out, chunks));
        }
        if rest.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&rest[..size]);
        chunks += 1;
        rest = &rest[size + 2..];
    }
}

/// Reads until EOF or a reset (true) or until `deadline` (false), appending
/// to `raw`.
pub fn read_until_closed(s: &mut TcpStream, raw: &mut Vec<u8>, deadline: Instant) -> bool {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true, // reset: closed too
        }
    }
}

/// Reads a whole response until the server closes the connection; panics
/// after 60 s in all (a per-read timeout alone never fires on a stream that
/// sends heartbeats).
pub fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let closed = read_until_closed(s, &mut raw, Instant::now() + Duration::from_secs(60));
    assert!(
        closed,
        "no complete response within 60 s (a stream answered where a reply was expected?)"
    );
    raw
}

/// The bytes of a request with `Connection: close` (and, when `close` is
/// false, without it). `Content-Length` is sent for a non-empty body and for
/// every method but GET.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// How [`send`] writes a request body.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    None,
    /// With `Content-Length`.
    Sized(&'a [u8]),
    /// With `Transfer-Encoding: chunked`, in chunks of 64 KiB.
    Chunked(&'a [u8]),
}

/// `GET target` with `Authorization: Bearer token`; panics unless it is a
/// `200`, and returns the JSON body.
pub fn get_json_as(addr: &str, token: &str, target: &str) -> Value {
    let auth = format!("Bearer {token}");
    let r = send(addr, "GET", target, &[("Authorization", &auth)], Body::None);
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    r.json()
}

/// One request on a fresh connection with `Connection: close`; panics if
/// no whole answer comes back. The body is written from another thread, so
/// a server that answers before reading it all (413) is heard.
pub fn send(addr: &str, method: &str, target: &str, headers: &[(&str, &str)], body: Body) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match body {
        Body::None => {}
        Body::Sized(b) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
        Body::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    let mut w = s.try_clone().unwrap();
    let mut raw = Vec::new();
    let read = std::thread::scope(|scope| {
        scope.spawn(move || -> std::io::Result<()> {
            w.write_all(head.as_bytes())?;
            match body {
                Body::None => {}
                Body::Sized(b) => w.write_all(b)?,
                Body::Chunked(b) => {
                    for c in b.chunks(64 * 1024) {
                        w.write_all(format!("{:x}\r\n", c.len()).as_bytes())?;
                        w.write_all(c)?;
                        w.write_all(b"\r\n")?;
                    }
                    w.write_all(b"0\r\n\r\n")?;
                }
            }
            w.flush()
        });
        // A reset after the whole answer arrived still counts as an answer.
        s.read_to_end(&mut raw)
    });
    match parse_reply(&raw) {
        Some(r) => r,
        None => panic!(
            "{method} {target}: no complete response ({read:?}); got {} bytes: {}",
            raw.len(),
            String::from_utf8_lossy(&raw[..raw.len().min(500)])
        ),
    }
}

/// Writes `request` on a (possibly kept-alive) connection and reads exactly
/// one framed response; an `Err` when the connection breaks before it is
/// complete (a dead daemon is an outcome, not a panic).
pub fn exchange(s: &mut TcpStream, request: &[u8]) -> std::io::Result<Reply> {
    s.write_all(request)?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 64 * 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            let framed = header(&head, "transfer-encoding").is_some()
                || header(&head, "content-length").is_some();
            if !framed {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a response without Content-Length",
                ));
            }
            if let Some(r) = parse_reply(&buf) {
                return Ok(r);
            }
        }
        let k = s.read(&mut tmp)?;
        if k == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed before a whole response",
            ));
        }
        buf.extend_from_slice(&tmp[..k]);
    }
}

// ---------------------------------------------------------------------------
// Server-sent events
// ---------------------------------------------------------------------------

/// One SSE block, its fields as sent.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    /// The `data:` lines.
    pub data: Vec<String>,
    /// The comment lines (`:` ...), trimmed.
    pub comments: Vec<String>,
}

impl SseEvent {
    /// The `id:` as a number (the seq of a Stele event).
    pub fn seq_id(&self) -> Option<u64> {
        self.id.as_deref()?.trim().parse().ok()
    }

    /// The data lines joined, as JSON; panics when they are not.
    pub fn json(&self) -> Value {
        let data = self.data.join("\n");
        serde_json::from_str(&data).unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {data}"))
    }
}

/// Parses one block (without its blank line): an `Err` names an unknown
/// field or a line that is not SSE.
fn parse_sse_block(block: &str) -> Result<SseEvent, String> {
    let mut ev = SseEvent::default();
    for line in block.lines() {
        if let Some(c) = line.strip_prefix(':') {
            ev.comments.push(c.trim().to_string());
        } else if let Some((k, v)) = line.split_once(':') {
            let v = v.strip_prefix(' ').unwrap_or(v).to_string();
            match k {
                "id" => ev.id = Some(v),
                "event" => ev.event = Some(v),
                "data" => ev.data.push(v),
                _ => return Err(format!("unknown SSE field {k:?} in {block:?}")),
            }
        } else if !line.is_empty() {
            return Err(format!("not an SSE line: {line:?}"));
        }
    }
    Ok(ev)
}

/// A read that timed out (the socket has a read timeout).
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The one SSE reader of the tests: a `text/event-stream` response read
/// as it comes, its head first, then block by block.
pub struct Sse {
    s: TcpStream,
    pub status: u16,
    /// The status line and the header lines, without the blank line.
    pub head: String,
    chunked: bool,
    /// Bytes received and not decoded yet (still chunk-framed).
    raw: Vec<u8>,
    /// Decoded body text not yet split into blocks.
    text: String,
    /// The last chunk arrived.
    ended: bool,
    /// The body of a non-200 answer ([`Sse::open`]).
    pub body: String,
}

impl Sse {
    /// `GET path` with `Accept: text/event-stream` and `headers`; reads the
    /// head (panics after 15 s) and, for a non-200 answer, its short body.
    pub fn open(addr: &str, path: &str, headers: &[(&str, String)]) -> Sse {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\nConnection: close\r\n"
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let end = loop {
            if let Some(i) = find(&raw, b"\r\n\r\n") {
                break i;
            }
            assert!(Instant::now() < deadline, "no response head for {path}");
            match s.read(&mut chunk) {
                Ok(0) => panic!("closed before a response head: {path}"),
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {}
                Err(e) => panic!("reading {path}: {e}"),
            }
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut sse = Sse::over(s, head, raw[end + 4..].to_vec());
        if sse.status != 200 {
            sse.read_error_body();
        }
        sse
    }

    /// A response whose head was read already: `rest` is what came after it.
    pub fn over(s: TcpStream, head: String, rest: Vec<u8>) -> Sse {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a response head: {head}"));
        let chunked =
            header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        Sse {
            s,
            status,
            head,
            chunked,
            raw: rest,
            text: String::new(),
            ended: false,
            body: String::new(),
        }
    }

    /// An error answer has a short body: read it (until closed or 5 s).
    fn read_error_body(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut body = std::mem::take(&mut self.raw);
        let decoded = |body: &Vec<u8>| {
            if self.chunked {
                dechunk(body).map(|(b, _)| b).unwrap_or_default()
            } else {
                body.clone()
            }
        };
        let mut chunk = [0u8; 16 * 1024];
        while Instant::now() < deadline {
            match self.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {
                    if serde_json::from_slice::<Value>(&decoded(&body)).is_ok() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        self.body = String::from_utf8_lossy(&decoded(&body)).into_owned();
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }

    /// The problem kind of a non-200 answer, or "".
    pub fn kind(&self) -> String {
        problem_kind(&serde_json::from_str(&self.body).unwrap_or(Value::Null)).to_string()
    }

    /// Moves complete chunks from `raw` to `text`.
    fn decode(&mut self) -> Result<(), String> {
        if !self.chunked {
            self.text
                .push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.raw)));
            return Ok(());
        }
        while !self.ended {
            let Some(i) = find(&self.raw, b"\r\n") else {
                return Ok(());
            };
            let size = String::from_utf8_lossy(&self.raw[..i]).into_owned();
            let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size line {size:?}"))?;
            if self.raw.len() < i + 2 + n + 2 {
                return Ok(());
            }
            let data = self.raw[i + 2..i + 2 + n].to_vec();
            self.raw.drain(..i + 2 + n + 2);
            self.ended = n == 0;
            self.text.push_str(&String::from_utf8_lossy(&data));
        }
        Ok(())
    }

    /// The next block (comments included), reading for at most `within`;
    /// an `Err` when the stream ends or breaks first, or is not SSE.
    pub fn next(&mut self, within: Duration) -> Result<SseEvent, String> {
        let deadline = Instant::now() + within;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            self.decode()?;
            if let Some(i) = self.text.find("\n\n") {
                let block: String = self.text.drain(..i + 2).collect();
                return parse_sse_block(&block);
            }
            if self.ended {
                return Err("the stream ended".into());
            }
            if Instant::now() >= deadline {
                return Err(format!("no whole SSE block within {within:?}"));
            }
            match self.s.read(&mut chunk) {
                Ok(0) => return Err("the stream closed".into()),
                Ok(n) => self.raw.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(format!("reading the stream: {e}")),
            }
        }
    }

    /// The next block that carries data (skipping comments).
    pub fn next_data(&mut self, within: Duration) -> Result<SseEvent, String> {
        let deadline = Instant::now() + within;
        loop {
            let ev = self.next(deadline.saturating_duration_since(Instant::now()))?;
            if !ev.data.is_empty() {
                return Ok(ev);
            }
        }
    }

    /// The data events that arrive within `within` (reading until then or
    /// until the stream closes); panics on what is not SSE.
    pub fn data_within(&mut self, within: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + within;
        let mut chunk = [0u8; 16 * 1024];
        while Instant::now() < deadline {
            match self.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.raw.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
        self.decode().unwrap_or_else(|e| panic!("{e}"));
        let mut got = Vec::new();
        while let Some(i) = self.text.find("\n\n") {
            let block: String = self.text.drain(..i + 2).collect();
            let ev = parse_sse_block(&block).unwrap_or_else(|e| panic!("{e}"));
            if !ev.data.is_empty() {
                let _ = ev.json(); // every data event is JSON
                got.push(ev);
            }
        }
        got
    }

    /// Reads data events until one satisfies `stop` (that one included);
    /// panics after `secs` seconds or when the stream closes.
    pub fn read_until(
        &mut self,
        secs: u64,
        mut stop: impl FnMut(&SseEvent) -> bool,
    ) -> Vec<SseEvent> {
        assert_eq!(self.status, 200, "{}\n{}", self.head, self.body);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_data(left) {
                Ok(ev) => {
                    let _ = ev.json(); // every data event is JSON
                    let done = stop(&ev);
                    got.push(ev);
                    if done {
                        return got;
                    }
                }
                Err(e) => panic!(
                    "stream: the awaited event did not come within {secs} s ({e}); got {:?}",
                    got.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Reads until the event with seq `seq` arrived.
    pub fn read_to_seq(&mut self, seq: u64) -> Vec<SseEvent> {
        self.read_until(30, |e| e.json()["seq"].as_u64() == Some(seq))
    }
}
