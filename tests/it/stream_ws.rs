//! `GET /v1/stream/ws`: the live stream over a WebSocket. The same stream as
//! SSE (`GET /v1/stream`, tested in `http`, `auth` and `abuse`), so these
//! tests check what the transport must keep: filters, resume by `from_seq`
//! with no gap and no duplicate (across a segment rotation), a client that
//! never reads is cut off and gives back its slot, shutdown closes the
//! socket, roles and tenants before the upgrade, the audit records.

use crate::abuse::{connect_raw, ingest_bulk, wait_metric};
use crate::support::http::Sse;
use crate::support::inproc::Server;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

/// Opens `path` as a WebSocket over `tcp` (bearer `token` if any): the
/// socket, or the refusal's status and problem.
fn ws_over(
    tcp: TcpStream,
    addr: &str,
    path: &str,
    token: Option<&str>,
) -> Result<Ws, (u16, Value)> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tungstenite::client(req, tcp) {
        Ok((ws, resp)) => {
            assert_eq!(resp.status(), 101);
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            let body = r.body().clone().unwrap_or_default();
            Err((
                r.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("handshake with {path}: {e}"),
    }
}

fn ws(addr: &str, path: &str, token: Option<&str>) -> Result<Ws, (u16, Value)> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    ws_over(tcp, addr, path, token)
}

/// The next event frame (pings are answered and skipped); panics on a close
/// or after the read timeout.
fn next_event(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn seqs(ws: &mut Ws, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| next_event(ws)["seq"].as_u64().unwrap())
        .collect()
}

/// Posts `n` events of `tenant`; returns their seqs.
fn post(d: &Server, n: usize, tenant: &str, tag: &str) -> Vec<u64> {
    let evs: Vec<Value> = (0..n)
        .map(|i| {
            json!({"action": "view", "actor": format!("{tag}{i}"), "tenant": tenant,
                   "description": format!("{tag} event {i} {}", "x".repeat(200))})
        })
        .collect();
    let (st, _, r) = d.post(&Value::Array(evs));
    assert_eq!(st, 201, "{r}");
    r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

fn server_with(conf: &str) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let f = tmp.path().join("stele.toml");
    std::fs::write(&f, format!("data_dir = {data:?}\n{conf}")).unwrap();
    let d = Server::start_with_file(&data, &f);
    (tmp, d)
}

#[test]
fn websocket_stream_filters_and_resumes_without_gap_or_duplicate_across_rotation() {
    let (_tmp, d) = server_with("[log]\nsegment_bytes_max = 4096\n");
    let before = post(&d, 5, "acme", "old"); // before a live-only stream: not sent
    let mut a = ws(&d.addr, "/v1/stream/ws?tenant=acme", None).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    post(&d, 4, "globex", "g");
    let live = post(&d, 6, "acme", "a");
    let first = seqs(&mut a, 6);
    assert_eq!(first, live, "the filter applies, live events only");
    // The frame is the JSON of the SSE data line for the same event.
    let mut sse = Sse::open(&d.addr, &format!("/v1/stream?from_seq={}", live[0]), &[]);
    let sse_first = sse.read_to_seq(live[0]);
    let mut b = ws(
        &d.addr,
        &format!("/v1/stream/ws?from_seq={}", live[0]),
        None,
    )
    .unwrap();
    assert_eq!(next_event(&mut b), sse_first[0].json());
    drop((sse, b));

    // Disconnect; events keep arriving, over several segments.
    drop(a);
    let segments_before = d.get("/v1/segments").2["segments"]
        .as_array()
        .unwrap()
        .len();
    let mut missed = Vec::new();
    for round in 0..8 {
        post(&d, 3, "globex", &format!("g{round}-"));
        missed.extend(post(&d, 5, "acme", &format!("r{round}-")));
    }
    let segments_after = d.get("/v1/segments").2["segments"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        segments_after >= segments_before + 3,
        "the log rotated ({segments_before} -> {segments_after} segments)"
    );
    let resume = first.last().unwrap() + 1;
    let mut c = ws(
        &d.addr,
        &format!("/v1/stream/ws?tenant=acme&from_seq={resume}"),
        None,
    )
    .unwrap();
    assert_eq!(seqs(&mut c, missed.len()), missed, "no gap");
    // Nothing else was sent twice: the next frame is the next acme event.
    let marker = post(&d, 1, "acme", "marker");
    assert_eq!(seqs(&mut c, 1), marker, "no duplicate");

    // from_seq=1 replays everything that matches, including what came
    // before any stream.
    let mut all = ws(&d.addr, "/v1/stream/ws?tenant=acme&from_seq=1", None).unwrap();
    let want: Vec<u64> = before
        .iter()
        .chain(&live)
        .chain(&missed)
        .chain(&marker)
        .copied()
        .collect();
    assert_eq!(seqs(&mut all, want.len()), want);

    // Full text, with a structured filter.
    let (st, _, r) = d.post(&json!([
        {"action": "rotate", "actor": "ops", "description": "rotated the vault credentials", "tenant": "globex"},
        {"action": "rotate", "actor": "sec", "description": "credentials expired", "tenant": "acme"},
    ]));
    assert_eq!(st, 201, "{r}");
    let mut t = ws(
        &d.addr,
        "/v1/stream/ws?q=credentials&tenant=acme&from_seq=1",
        None,
    )
    .unwrap();
    assert_eq!(
        seqs(&mut t, 1),
        vec![r["events"][1]["seq"].as_u64().unwrap()]
    );

    // Refusals come before the upgrade, as the SSE stream's problems.
    for (path, param) in [
        ("/v1/stream/ws?from_seq=minus-one", "from_seq"),
        ("/v1/stream/ws?limit=5", "limit"),
    ] {
        let (st, p) = ws(&d.addr, path, None).expect_err("refused");
        assert_eq!(st, 400, "{path}: {p}");
        assert_eq!(p["field"], param, "{p}");
    }
    // A plain GET is not a handshake.
    let (st, _, p) = d.get("/v1/stream/ws");
    assert_eq!(st, 400, "{p}");
    assert_eq!(p["field"], "Upgrade", "{p}");
}

#[test]
fn a_websocket_nobody_reads_is_cut_off_and_gives_back_its_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_with_limits(
        tmp.path(),
        stele::config::Limits {
            streams_max: 1,
            write_stall_timeout_secs: 2,
            ..Default::default()
        },
    );
    let first = post(&d, 3, "acme", "s");
    let addr: SocketAddrV4 = d.addr.parse().unwrap();
    // A 4 KiB receive buffer, and nothing read after the handshake.
    let tcp = connect_raw(addr, Some(4096), false);
    let stalled = ws_over(tcp, &d.addr, "/v1/stream/ws?from_seq=1", None).unwrap();
    assert!(wait_metric(
        &d,
        "stele_streams_open 1",
        Duration::from_secs(20)
    ));
    // Its slot is taken.
    let (st, p) = ws(&d.addr, "/v1/stream/ws", None).expect_err("refused");
    assert_eq!(st, 503, "{p}");

    // 10 MB of events: far more than the socket buffers, the socket's write
    // buffer (128 KiB and one frame) and the 4 chunks in flight hold.
    let last = ingest_bulk(&d, "ws-bulk", 10);
    let started = Instant::now();
    assert!(
        wait_metric(
            &d,
            "stele_connections_write_stalled_total 1",
            Duration::from_secs(30)
        ),
        "the stalled socket was not cut off"
    );
    assert!(
        wait_metric(&d, "stele_streams_open 0", Duration::from_secs(5)),
        "the stream slot was not given back"
    );
    eprintln!(
        "websocket write stall: cut off {:?} after the ingest ended",
        started.elapsed()
    );
    drop(stalled);
    // The slot serves a new socket, which resumes anywhere in the log.
    let mut fresh = ws(
        &d.addr,
        &format!("/v1/stream/ws?from_seq={}", first[0]),
        None,
    )
    .unwrap();
    assert_eq!(seqs(&mut fresh, 3), first);
    let mut tail = ws(&d.addr, "/v1/stream/ws", None).err().map(|e| e.0);
    assert_eq!(tail.take(), Some(503), "one stream at a time");
    drop(fresh);
    assert!(wait_metric(
        &d,
        "stele_streams_open 0",
        Duration::from_secs(5)
    ));
    let mut end = ws(&d.addr, &format!("/v1/stream/ws?from_seq={last}"), None).unwrap();
    assert_eq!(seqs(&mut end, 1), vec![last]);
}

/// An upgraded connection keeps its `connections_max` slot until the
/// WebSocket closes: hyper lets go of the connection at the upgrade, and
/// the slot used to go with it, so WebSockets did not count.
#[test]
fn websockets_hold_their_connection_slots_until_they_close() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_with_limits(
        tmp.path(),
        stele::config::Limits {
            connections_max: 2,
            ..Default::default()
        },
    );
    let mut open: Vec<Ws> = (0..2)
        .map(|_| ws(&d.addr, "/v1/stream/ws", None).unwrap())
        .collect();
    // Both slots are the WebSockets': a third connection is not served.
    let mut third = TcpStream::connect(&d.addr).unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 64];
    let early = third.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut),
        "a third connection was served while two WebSockets held the slots: {early:?}"
    );
    // One closes: its slot goes to the waiting connection.
    let mut closing = open.pop().unwrap();
    closing.close(None).unwrap();
    while closing.read().is_ok() {}
    drop(closing);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    third.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    drop(open);
}

#[test]
fn shutdown_closes_websockets_with_going_away() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let seqs_posted = post(&d, 3, "acme", "x");
    let mut idle = ws(&d.addr, "/v1/stream/ws", None).unwrap();
    let mut busy = ws(&d.addr, "/v1/stream/ws?from_seq=1", None).unwrap();
    assert_eq!(seqs(&mut busy, 3), seqs_posted);
    let started = Instant::now();
    let stopper = std::thread::spawn(move || drop(d)); // stops and closes the state
    for (name, ws) in [("idle", &mut idle), ("busy", &mut busy)] {
        let frame = loop {
            match ws.read() {
                Ok(Message::Close(f)) => break f,
                Ok(Message::Text(t)) => panic!("{name}: an event after the end: {t}"),
                Ok(_) => {}
                Err(e) => panic!("{name}: no close frame: {e}"),
            }
        };
        let frame = frame.expect("a close frame with a code");
        assert_eq!(frame.code, CloseCode::Away, "{name}: {frame:?}");
        assert!(frame.reason.contains("from_seq"), "{name}: {frame:?}");
    }
    stopper.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the server took {:?} to stop with open sockets",
        started.elapsed()
    );
}

/// A well-formed key (`stele_` and 43 base64url characters: hex is).
fn token(seed: &str) -> String {
    let h = hex::encode(Sha256::digest(format!("ws test {seed}").as_bytes()));
    format!("stele_{}", &h[..43])
}

fn key_toml(id: &str, roles: &[&str], tenants: &[&str]) -> String {
    format!(
        "[[auth.keys]]\nid = \"{id}\"\nhash = \"sha256:{}\"\nroles = {}\ntenants = {}\n\n",
        hex::encode(Sha256::digest(token(id).as_bytes())),
        serde_json::to_string(roles).unwrap(),
        serde_json::to_string(tenants).unwrap(),
    )
}

#[test]
fn websocket_needs_the_read_role_keeps_to_the_tenant_and_is_audited() {
    let mut conf = String::from(
        "[auth.roles.ingest]\nrate_per_sec = 0\n[auth.roles.read]\nrate_per_sec = 0\n\
         [auth.roles.export]\nrate_per_sec = 0\n[auth.roles.admin]\nrate_per_sec = 0\n",
    );
    conf += &key_toml("ing", &["ingest"], &["*"]);
    conf += &key_toml("rd-acme", &["read"], &["acme"]);
    conf += &key_toml("auditor", &["read"], &["*"]);
    let (_tmp, d) = server_with(&conf);
    let (ing, rd, auditor) = (token("ing"), token("rd-acme"), token("auditor"));

    // No key: 401; a key without the read role: 403; both before the upgrade.
    assert_eq!(ws(&d.addr, "/v1/stream/ws", None).err().unwrap().0, 401);
    let (st, p) = ws(&d.addr, "/v1/stream/ws", Some(&ing)).err().unwrap();
    assert_eq!(st, 403, "{p}");

    let evs: Vec<Value> = ["acme", "globex", "acme", "globex", "acme"]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"action": "view", "actor": format!("u{i}"), "tenant": t}))
        .collect();
    let body = Value::Array(evs).to_string();
    let bearer_ing = format!("Bearer {ing}");
    let r = crate::support::http::send(
        &d.addr,
        "POST",
        "/v1/events",
        &[
            ("authorization", &bearer_ing),
            ("content-type", "application/json"),
        ],
        crate::support::http::Body::Sized(body.as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let acme: Vec<u64> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .step_by(2)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();

    // The acme key sees acme only, even when it asks for globex.
    let mut s = ws(&d.addr, "/v1/stream/ws?from_seq=1", Some(&rd)).unwrap();
    let got: Vec<Value> = (0..3).map(|_| next_event(&mut s)).collect();
    assert!(got.iter().all(|e| e["tenant"] == "acme"), "{got:?}");
    assert_eq!(
        got.iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        acme
    );
    // A client's close is answered (a clean closing handshake).
    s.close(None).unwrap();
    let answer = loop {
        match s.read() {
            Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)) => {}
            other => break other,
        }
    };
    assert!(
        matches!(
            answer,
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed)
        ),
        "{answer:?}"
    );
    let mut g = ws(&d.addr, "/v1/stream/ws?tenant=globex&from_seq=1", Some(&rd)).unwrap();
    g.get_ref()
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    assert!(
        matches!(g.read(), Err(tungstenite::Error::Io(_))),
        "another tenant's events were sent"
    );
    drop(g);

    // The start and end records, under the route's name; the end counts
    // what was sent.
    let deadline = Instant::now() + Duration::from_secs(30);
    let bearer_auditor = format!("Bearer {auditor}");
    loop {
        let r = crate::support::http::send(
            &d.addr,
            "GET",
            "/v1/events?category=audit_access&actor=rd-acme&action=stream_ws&limit=50",
            &[("authorization", &bearer_auditor)],
            crate::support::http::Body::None,
        );
        let recs = r.json()["events"].as_array().cloned().unwrap_or_default();
        let phases: Vec<(String, Value)> = recs
            .iter()
            .map(|e| {
                let m = &e["metadata"];
                assert_eq!(m["http_status"], 101, "{e}");
                (
                    m["phase"].as_str().unwrap_or("").to_string(),
                    m["result_count"].clone(),
                )
            })
            .collect();
        let starts = phases.iter().filter(|p| p.0 == "start").count();
        let ends: Vec<&Value> = phases
            .iter()
            .filter(|p| p.0 == "end")
            .map(|p| &p.1)
            .collect();
        if starts == 2 && ends.len() == 2 {
            assert!(ends.contains(&&json!(3)), "{phases:?}");
            assert!(ends.contains(&&json!(0)), "{phases:?}");
            break;
        }
        assert!(Instant::now() < deadline, "audit records: {phases:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
