//! Two nodes on one bucket: one prefix a data directory, never two.

use super::*;
use crate::support::s3::s3_or_skip;

#[test]
fn two_nodes_share_a_bucket_under_their_own_prefixes_and_never_one_prefix() {
    let Some(s3) = s3_or_skip("archive_nodes") else {
        return;
    };
    let bucket = s3.bucket("nodes", None);
    let tmp = tempfile::tempdir().unwrap();
    let creds = credentials(&s3, tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (clock, _) = history(&a, 2, 200, 6);
    history(&b, 2, 200, 7);
    let cfg_a = archived(&a, &bucket, "web-1", &s3.endpoint, &creds);
    let sa = Server::start_on(cfg_a.serve_config(None), clock.clone());
    wait_archived(&sa, &clock);
    // A stops (its claim stays), so that nothing but B could write now.
    drop(sa);
    // B configured with A's node name: refused, nothing written, degraded.
    let cfg_b = archived(&b, &bucket, "web-1", &s3.endpoint, &creds);
    let before = objects(&bucket, "web-1");
    let sb = Server::start_on(cfg_b.serve_config(None), clock.clone());
    let mut st = Value::Null;
    wait_for_state("the second node to be refused", || {
        st = archive_state(&sb);
        !st["problems"].as_array().unwrap().is_empty()
    });
    assert_eq!(st["claimed"], false, "{st:#}");
    assert_eq!(st["uploads"], 0, "{st:#}");
    let problem = st["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("held by another data directory"),
        "{problem}"
    );
    assert_eq!(sb.get("/readyz").2["degraded"], true);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(objects(&bucket, "web-1"), before, "the refused node wrote");
    drop(sb);
    // Under its own name, B archives beside A.
    let cfg_b = archived(&b, &bucket, "web-2", &s3.endpoint, &creds);
    let sb = Server::start_on(cfg_b.serve_config(None), clock.clone());
    wait_archived(&sb, &clock);
    drop(sb);
    let out = stele_s3(&bucket)
        .args(["verify", &bucket.url("stele"), "--endpoint", &s3.endpoint])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("intact: 2 node(s)"), "{text}");
    assert!(
        text.contains("node=web-1/") && text.contains("node=web-2/"),
        "{text}"
    );
}
