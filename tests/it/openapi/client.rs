//! A small HTTP/1.1 client for the contract tests: requests built from the
//! spec, responses read whole or kept open as a stream (chunked, SSE,
//! WebSocket handshakes), and the media-type and percent-encoding helpers.

use super::*;

pub(super) fn preview(s: &str) -> String {
    if s.len() <= 600 {
        return s.to_string();
    }
    let mut end = 600;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

pub(super) struct Resp {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Resp {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn ctype(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request to send.
#[derive(Clone)]
pub(super) struct Req {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    /// A Content-Length other than the body's (a body that stalls).
    pub(super) declared_length: Option<usize>,
}

impl Req {
    pub(super) fn new(method: &str, target: impl Into<String>) -> Req {
        Req {
            method: method.to_string(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            declared_length: None,
        }
    }

    pub(super) fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub(super) fn body(mut self, ctype: Option<&str>, body: Vec<u8>) -> Req {
        if let Some(c) = ctype {
            self = self.header("Content-Type", c);
        }
        self.body = body;
        self
    }

    pub(super) fn describe(&self) -> String {
        let ctype = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| format!(" [Content-Type: {v}]"))
            .unwrap_or_default();
        let extra: String = self
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
            .map(|(k, v)| format!(" [{k}: {v}]"))
            .collect();
        let body = if self.body.is_empty() {
            String::new()
        } else {
            format!(" with a {}-byte body", self.body.len())
        };
        format!(
            "request `{} {}`{ctype}{extra}{body}",
            self.method,
            preview(&self.target)
        )
    }
}

/// How long a stream may take to send its next block.
pub(super) const SSE_WAIT: Duration = Duration::from_secs(20);

/// An open connection whose response head has been read.
pub(super) struct Conn {
    reader: BufReader<TcpStream>,
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
}

impl Conn {
    pub(super) fn open(addr: &str, req: &Req, read_timeout: Duration) -> Result<Conn, String> {
        let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(read_timeout)).unwrap();
        let mut head = format!("{} {} HTTP/1.1\r\nHost: test\r\n", req.method, req.target);
        // A WebSocket handshake says `Connection: Upgrade` instead.
        if !req
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
        {
            head.push_str("Connection: close\r\n");
        }
        for (k, v) in &req.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !req.body.is_empty() || req.method == "POST" {
            let n = req.declared_length.unwrap_or(req.body.len());
            head.push_str(&format!("Content-Length: {n}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())
            .map_err(|e| format!("send head: {e}"))?;
        // Write the body from another thread: the server may answer (413)
        // and close before reading all of it.
        let writer = if req.body.is_empty() {
            None
        } else {
            let mut w = s.try_clone().unwrap();
            let body = req.body.clone();
            Some(std::thread::spawn(move || {
                let _ = w.write_all(&body);
            }))
        };
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("read status line: {e}"))?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP status line: {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("read headers: {e}"))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if let Some(w) = writer {
            if status < 300 {
                let _ = w.join();
            }
        }
        Ok(Conn {
            reader,
            status,
            headers,
        })
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }

    /// The next chunk of a chunked body (`None` at its end).
    fn chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("read chunk size: {e}"))?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        if size == 0 {
            return Ok(None);
        }
        let mut buf = vec![0; size + 2];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| format!("read chunk: {e}"))?;
        buf.truncate(size);
        Ok(Some(buf))
    }

    /// The rest of the response, read as SSE blocks.
    pub(super) fn into_sse(self) -> Sse {
        let mut head = format!("HTTP/1.1 {}", self.status);
        for (k, v) in &self.headers {
            head.push_str(&format!("\r\n{k}: {v}"));
        }
        let rest = self.reader.buffer().to_vec();
        Sse::over(self.reader.into_inner(), head, rest)
    }

    pub(super) fn finish(mut self) -> Result<Resp, String> {
        let mut body = Vec::new();
        if self.chunked() {
            while let Some(c) = self.chunk()? {
                body.extend_from_slice(&c);
            }
        } else if let Some(n) = self.header("content-length") {
            let n: usize = n.parse().map_err(|_| format!("bad Content-Length {n:?}"))?;
            body.resize(n, 0);
            self.reader
                .read_exact(&mut body)
                .map_err(|e| format!("read body: {e}"))?;
        } else {
            let _ = self.reader.read_to_end(&mut body);
        }
        Ok(Resp {
            status: self.status,
            headers: self.headers,
            body,
        })
    }
}

pub(super) fn send(addr: &str, req: &Req) -> Result<Resp, String> {
    Conn::open(addr, req, Duration::from_secs(60))?.finish()
}

pub(super) fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn example_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn essence(media: &str) -> String {
    media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a response Content-Type matches a documented media type: by
/// essence, and parameter for parameter when the spec names parameters.
pub(super) fn media_matches(documented: &str, actual: &str) -> bool {
    let norm = |s: &str| -> Vec<String> {
        s.split(';')
            .map(|p| p.trim().to_ascii_lowercase().replace(' ', ""))
            .collect()
    };
    let (d, a) = (norm(documented), norm(actual));
    if d.len() > 1 {
        d == a
    } else {
        d[0] == a[0]
    }
}
