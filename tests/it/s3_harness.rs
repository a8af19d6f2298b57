//! The S3 test support itself (`support::s3`), against the real server the
//! archive tests use: a bucket per test, objects written, read, listed and
//! deleted through `object_store`, object lock keeping a version that a
//! delete only hides, and the bucket gone once dropped. Skipped without
//! `S3_ENDPOINT` (docs/s3-testing.md), failed without it under
//! `STELE_S3_REQUIRED=1`.

use crate::support::s3::s3_or_skip;
use object_store::ObjectStoreExt;

#[test]
fn put_get_list_delete_round_trip() {
    let Some(s3) = s3_or_skip("s3_harness::put_get_list_delete_round_trip") else {
        return;
    };
    let b = s3.bucket("put_get_list_delete_round_trip", None);
    assert!(
        b.name.len() <= 63 && b.name.starts_with("stele-put-get-list"),
        "{}",
        b.name
    );
    assert!(b.list("").is_empty(), "a new bucket is empty");

    b.put("day/2026-12-04.parquet", b"first");
    b.put("day/2026-12-05.parquet", &[7u8; 3000]);
    b.put("dayx/other", b"not under day/");
    assert_eq!(
        b.list("day"),
        vec![
            ("day/2026-12-04.parquet".to_string(), 5),
            ("day/2026-12-05.parquet".to_string(), 3000),
        ]
    );
    assert_eq!(b.get("day/2026-12-04.parquet"), b"first");

    // an overwrite, as a tamper test does it
    b.put("day/2026-12-04.parquet", b"forged!");
    assert_eq!(b.get("day/2026-12-04.parquet"), b"forged!");

    b.delete("day/2026-12-04.parquet");
    assert_eq!(
        b.list("day"),
        vec![("day/2026-12-05.parquet".to_string(), 3000)]
    );
    // an unversioned bucket: the delete removed the object, no marker left
    let v = b.versions("day/2026-12-04");
    assert!(v.is_empty(), "{v:?}");

    assert_eq!(b.url("day/"), format!("s3://{}/day/", b.name));
    let vars = b.env_vars();
    let var = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(var("AWS_ENDPOINT"), Some(s3.endpoint.as_str()));
    assert_eq!(var("AWS_ALLOW_HTTP"), Some("true"));
}

#[test]
fn a_locked_version_survives_a_delete() {
    let Some(s3) = s3_or_skip("s3_harness::a_locked_version_survives_a_delete") else {
        return;
    };
    let b = s3.bucket("a_locked_version_survives_a_delete", Some(1));
    b.put("seg/1", b"sealed segment");
    b.delete("seg/1");
    assert!(
        b.list("seg").is_empty(),
        "deleted without a version id: hidden"
    );

    let v = b.versions("seg/");
    assert_eq!(v.len(), 2, "a delete marker and the version: {v:?}");
    assert!(v[0].delete_marker && v[0].is_latest, "{v:?}");
    assert!(!v[1].delete_marker && !v[1].is_latest, "{v:?}");
    assert_eq!((v[1].key.as_str(), v[1].size), ("seg/1", 14));
    // the bucket's Drop deletes the locked version (GOVERNANCE bypass)
}

#[tokio::test]
async fn helpers_work_inside_a_runtime() {
    let Some(s3) = s3_or_skip("s3_harness::helpers_work_inside_a_runtime") else {
        return;
    };
    let b = s3.bucket("helpers_work_inside_a_runtime", None);
    b.put("k", b"v");
    assert_eq!(b.get("k"), b"v");
    // and the store on the test's own runtime
    let got = b
        .store()
        .get(&"k".into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], b"v");
}

#[test]
fn the_bucket_is_gone_after_drop() {
    let Some(s3) = s3_or_skip("s3_harness::the_bucket_is_gone_after_drop") else {
        return;
    };
    let b = s3.bucket("the_bucket_is_gone_after_drop", Some(1));
    let name = b.name.clone();
    b.put("a", b"locked for a day");
    b.put("a", b"a second version");
    b.delete("a");
    assert!(s3.bucket_exists(&name));
    drop(b);
    assert!(!s3.bucket_exists(&name), "{name} still there");
}
