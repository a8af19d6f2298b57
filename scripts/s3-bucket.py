#!/usr/bin/env python3
"""Test buckets on the S3 server that S3_ENDPOINT names (scripts/s3-ceph.sh
writes the variables to DIR/s3.env).  Needs boto3 (pip install boto3).

    scripts/s3-bucket.py create NAME [--object-lock-days N]
    scripts/s3-bucket.py delete NAME
    scripts/s3-bucket.py versions NAME [PREFIX]

create    makes the bucket; with --object-lock-days N, with object lock
          enabled (versioning on) and a default retention of GOVERNANCE
          for N days, so that every new object version is locked
delete    deletes every object version and delete marker (bypassing
          GOVERNANCE retention), then the bucket; a bucket that does not
          exist is not an error
versions  prints the object versions and delete markers (under PREFIX) as a
          JSON list of {"key", "version_id", "is_latest", "delete_marker",
          "size", "etag", "last_modified"}, sorted by key then newest first

Environment: S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY (required),
S3_REGION (default us-east-1). Path-style addressing, SigV4.

Exit codes: 0 done; 1 the server refused or could not be reached (its
answer on stderr); 2 bad usage or missing variables.
"""
import argparse
import json
import os
import sys

try:
    import boto3
    import botocore.exceptions
    from botocore.config import Config
except ImportError:
    print("s3-bucket.py: boto3 is missing: python3 -m pip install boto3", file=sys.stderr)
    sys.exit(2)


def fail(msg, code=1):
    print("s3-bucket.py: %s" % msg, file=sys.stderr)
    sys.exit(code)


def answer(exc):
    """the server's answer from a botocore ClientError: status, code, message"""
    r = exc.response
    return "HTTP %s %s: %s" % (
        r.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        r.get("Error", {}).get("Code"),
        r.get("Error", {}).get("Message"),
    )


def client():
    missing = [v for v in ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY") if not os.environ.get(v)]
    if missing:
        fail("%s not set (source DIR/s3.env of scripts/s3-ceph.sh)" % ", ".join(missing), 2)
    cfg = dict(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    try:
        # boto3 >= 1.36 adds flexible checksums to every request by default:
        # only where the API requires them (radosgw 16 ignores them anyway;
        # see docs/s3-testing.md)
        config = Config(request_checksum_calculation="when_required",
                        response_checksum_validation="when_required", **cfg)
    except TypeError:  # an older botocore (Debian 12's python3-boto3)
        config = Config(**cfg)
    return boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT"],
        aws_access_key_id=os.environ["S3_ACCESS_KEY"],
        aws_secret_access_key=os.environ["S3_SECRET_KEY"],
        region_name=os.environ.get("S3_REGION") or "us-east-1",
        config=config,
    )


def create(s3, name, lock_days):
    if lock_days is None:
        s3.create_bucket(Bucket=name)
        return
    if lock_days < 1:
        fail("--object-lock-days must be at least 1, got %d" % lock_days, 2)
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": lock_days}},
        },
    )


def all_versions(s3, name, prefix=""):
    """every version and delete marker: (kind, entry) pairs"""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name, Prefix=prefix):
        out += [("version", v) for v in page.get("Versions", [])]
        out += [("marker", m) for m in page.get("DeleteMarkers", [])]
    return out


def delete(s3, name):
    try:
        entries = all_versions(s3, name)
    except botocore.exceptions.ClientError as x:
        if x.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return
        raise
    # also plain objects of an unversioned bucket: list_object_versions
    # gives them with version id "null"
    refused = []
    for i in range(0, len(entries), 1000):
        batch = [{"Key": e["Key"], "VersionId": e["VersionId"]} for _, e in entries[i:i + 1000]]
        r = s3.delete_objects(
            Bucket=name,
            Delete={"Objects": batch, "Quiet": True},
            BypassGovernanceRetention=True,
        )
        refused += r.get("Errors", [])
    if refused:
        fail("could not delete %d version(s) of %s, e.g. %s %s: %s %s" % (
            len(refused), name, refused[0].get("Key"), refused[0].get("VersionId"),
            refused[0].get("Code"), refused[0].get("Message")))
    s3.delete_bucket(Bucket=name)


def versions(s3, name, prefix):
    rows = [{
        "key": e["Key"],
        "version_id": e["VersionId"],
        "is_latest": e["IsLatest"],
        "delete_marker": kind == "marker",
        "size": e.get("Size", 0),
        "etag": e.get("ETag", "").strip('"') or None,
        "last_modified": e["LastModified"].isoformat(),
    } for kind, e in all_versions(s3, name, prefix)]
    rows.sort(key=lambda r: r["last_modified"], reverse=True)
    rows.sort(key=lambda r: r["key"])
    json.dump(rows, sys.stdout, indent=1)
    print()


def main():
    p = argparse.ArgumentParser(
        prog="s3-bucket.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create", help="make a bucket")
    c.add_argument("name")
    c.add_argument("--object-lock-days", type=int, metavar="N",
                   help="object lock with default GOVERNANCE retention of N days")
    d = sub.add_parser("delete", help="delete every version, then the bucket")
    d.add_argument("name")
    v = sub.add_parser("versions", help="JSON list of versions and delete markers")
    v.add_argument("name")
    v.add_argument("prefix", nargs="?", default="")
    a = p.parse_args()

    s3 = client()
    try:
        if a.cmd == "create":
            create(s3, a.name, a.object_lock_days)
        elif a.cmd == "delete":
            delete(s3, a.name)
        else:
            versions(s3, a.name, a.prefix)
    except botocore.exceptions.ClientError as x:
        fail("%s %s: %s" % (a.cmd, a.name, answer(x)))
    except (botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError) as x:
        fail("%s %s: %s (is the server at %s running?)" % (a.cmd, a.name, x, os.environ["S3_ENDPOINT"]))


if __name__ == "__main__":
    main()
