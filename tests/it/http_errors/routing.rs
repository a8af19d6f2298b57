//! Routing errors: unknown routes 404, wrong methods 405 with `Allow`, and the
//! edges (HEAD is not GET, trailing slashes, path parameters that do not
//! decode to UTF-8).

use super::*;

#[test]
fn unknown_routes_are_404_and_wrong_methods_405() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    for target in [
        "/v2/nothing",
        "/v1/event",
        "/v1/events/a/b",
        "/v1/entities/order/55",
        "/v1/users/u-1",
        "/log",
    ] {
        let r = get(&d, target);
        let p = problem(&r, 404, "not-found", "No such route");
        assert!(detail(&p).contains(target), "{target}: {p}");
    }
    // (method, target, the methods the route does allow)
    let cases = [
        ("DELETE", "/v1/events", "GET, POST"),
        ("PUT", "/v1/events", "GET, POST"),
        ("POST", "/v1/events/evt-1", "GET"),
        ("DELETE", "/v1/events/evt-1", "GET"),
        ("POST", "/v1/search", "GET"),
        ("PATCH", "/v1/stats", "GET"),
        ("POST", "/v1/export", "GET"),
        ("POST", "/v1/stream", "GET"),
        ("POST", "/v1/entities/order/55/history", "GET"),
        ("PUT", "/v1/users/u-1/events", "GET"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/readyz", "GET"),
        ("POST", "/metrics", "GET"),
    ];
    for (method, target, allowed) in cases {
        let r = send(&d.addr, method, target, &[], Body::Sized(b""));
        let p = problem(&r, 405, "method-not-allowed", "Method not allowed");
        assert!(
            detail(&p).starts_with(&format!("{method} is not allowed on {target}")),
            "{p}"
        );
        // RFC 9110 §15.5.6: a 405 names the allowed methods in Allow.
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {target}: 405 without Allow: {}", r.head));
        let mut got: Vec<&str> = allow.split(',').map(str::trim).collect();
        got.retain(|m| *m != "HEAD");
        got.sort();
        let mut want: Vec<&str> = allowed.split(", ").collect();
        want.sort();
        assert_eq!(got, want, "{method} {target}: Allow: {allow}");
    }
    assert_eq!(log_last_seq(&d), 0);
}

/// The edges of routing: HEAD is not GET (no route answers HEAD), trailing
/// slashes are ignored but problems quote the path as sent, and a path
/// parameter that is not UTF-8 once decoded is a 400, not a lookup of a
/// mangled id.
#[test]
fn routing_edges_head_trailing_slashes_and_undecodable_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    // HEAD: 405 naming GET (read raw: a HEAD answer has no body to frame).
    let mut s = std::net::TcpStream::connect(&d.addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut s, &mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("\r\nallow: get"), "{raw}");

    assert_eq!(post_json(&d, &ok_event("slash-1")).status, 201);
    let r = get(&d, "/v1/events/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["events"].is_array(), "{}", r.text());
    let r = get(&d, "/v1/events/slash-1/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], "slash-1");
    let p = problem(&get(&d, "/nope/"), 404, "not-found", "No such route");
    assert_eq!(detail(&p), "/nope/ is not a Stele route");

    let p = problem(
        &get(&d, "/v1/events/%FF%FE"),
        400,
        "invalid-parameter",
        "Invalid query parameter",
    );
    assert!(detail(&p).contains("not UTF-8"), "{p}");
    // A valid escape is decoded: the id is "a/b", which does not exist.
    let p = problem(
        &get(&d, "/v1/events/a%2Fb"),
        404,
        "not-found",
        "No such event",
    );
    assert!(detail(&p).contains("a/b"), "{p}");
}
