//! Malformed chunked bodies: bad sizes and broken framing get a 400 or a
//! closed connection, and nothing of the request is stored.

use super::*;

#[test]
fn malformed_chunked_bodies_get_400_or_a_closed_connection_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let acked = seed(&d, "chunk", 10);
    let before = log_last_seq(&d);
    let ev = br#"{"id": "chunked-1", "action": "a", "actor": "b"}"#;
    let n = ev.len();
    let head = b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let body = |parts: &[&[u8]]| -> Vec<u8> {
        let mut out = head.to_vec();
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    };
    let size = format!("{n:x}\r\n").into_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a bad hex size",
            body(&[b"zz\r\n", ev, b"\r\n0\r\n\r\n"]),
            "chunk size",
        ),
        (
            "a negative size",
            body(&[b"-1a\r\n", ev, b"\r\n0\r\n\r\n"]),
            "chunk size",
        ),
        (
            "no CRLF after the data",
            body(&[&size, ev, b"0\r\n\r\n"]),
            "chunk body",
        ),
        (
            "a size overflowing 64 bits",
            body(&[b"ffffffffffffffffff\r\n", ev, b"\r\n0\r\n\r\n"]),
            "overflow",
        ),
        (
            "a 2^64-1 byte chunk cut short",
            body(&[b"ffffffffffffffff\r\n", ev]),
            "end of file",
        ),
        (
            "a truncated last chunk, then close",
            body(&[format!("{:x}\r\n", n + 40).as_bytes(), ev]),
            "end of file",
        ),
        ("no last chunk", body(&[&size, ev, b"\r\n"]), "EOF"),
        (
            "a last chunk without its CRLF",
            body(&[&size, ev, b"\r\n0\r\n"]),
            "",
        ),
        (
            "a garbage trailer",
            body(&[&size, ev, b"\r\n0\r\nthis is not a header\r\n\r\n"]),
            "header",
        ),
        (
            "a binary trailer",
            body(&[&size, ev, b"\r\n0\r\n\x00\x01\x02: \xff\r\n\r\n"]),
            "header",
        ),
        (
            "100 KB of trailers",
            body(&[&size, ev, b"\r\n0\r\nX-T: ", &[b't'; 100_000], b"\r\n\r\n"]),
            "trailers",
        ),
        (
            "5,000 trailers",
            body(&[
                &size,
                ev,
                b"\r\n0\r\n",
                &(0..5000)
                    .flat_map(|i| format!("X-T{i}: v\r\n").into_bytes())
                    .collect::<Vec<u8>>(),
                b"\r\n",
            ]),
            "trailers",
        ),
        (
            "100 KB of chunk extension",
            body(&[
                format!("{n:x};").as_bytes(),
                &[b'e'; 100_000],
                b"\r\n",
                ev,
                b"\r\n0\r\n\r\n",
            ]),
            "extension",
        ),
    ];
    for (what, bytes, says) in &cases {
        // Half-closed: the server sees where the body ends, and can answer.
        let x = exchange(&d.addr, bytes, true, Duration::from_secs(20));
        assert!(x.closed, "{what}: connection left open after {:?}", x.took);
        match x.reply() {
            Some(r) => {
                let p = problem(&r, 400, "invalid-body");
                assert!(
                    detail(&p).starts_with("the body could not be read: ")
                        && detail(&p).contains(says)
                        && detail(&p).ends_with("nothing was stored"),
                    "{what}: {p}"
                );
            }
            None => assert!(x.raw.is_empty(), "{what}: {}", x.shown()),
        }
    }
    // Cut without a half-close: the client is gone; nothing may be stored.
    for (_, bytes, _) in &cases[4..7] {
        let mut s = TcpStream::connect(&d.addr).unwrap();
        let _ = s.write_all(bytes);
    }
    // (A stalled chunked body is cut by request_timeout_secs: tests/it/http/limits.rs.)
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(log_last_seq(&d), before, "a malformed body stored events");
    let (st, _, v) = d.get("/v1/events/chunked-1");
    assert_eq!(st, 404, "{v}");

    // Well-formed chunked bodies (with an extension, with a trailer) still work.
    for (i, ext) in ["", ";name=value"].into_iter().enumerate() {
        let ev = format!(r#"{{"id": "chunked-ok-{i}", "action": "a", "actor": "b"}}"#);
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(
            format!(
                "{:x}{ext}\r\n{ev}\r\n0\r\nX-Trailer: fine\r\n\r\n",
                ev.len()
            )
            .as_bytes(),
        );
        let x = exchange(&d.addr, &bytes, false, Duration::from_secs(20));
        let r = x.reply().unwrap_or_else(|| panic!("{}", x.shown()));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    assert_eq!(log_last_seq(&d), before + 2);
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}
