//! `[[webhooks]]` and `[[alerts]]` through `stele check-config`: a valid
//! section prints back, a bad one is refused naming its key.

use crate::support::stele_clean_env;
use std::path::Path;

fn check(dir: &Path, text: &str, print: bool) -> (i32, String, String) {
    let path = dir.join("stele.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = stele_clean_env();
    cmd.arg("check-config").arg(&path);
    if print {
        cmd.arg("--print");
    }
    let out = cmd.output().expect("run stele check-config");
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const HOOK: &str = "[[webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example.com/stele\"\n\
                    secret = \"0123456789abcdef0123\"\n";

#[test]
fn a_valid_alert_section_is_printed_back() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "{HOOK}\n[[webhooks]]\nname = \"chat\"\nurl = \"https://hooks.slack.com/services/T/B/X\"\n\
         format = \"slack\"\n\n[[alerts]]\nname = \"failed-logins\"\nwebhook = \"ops\"\n\
         filter = \"action=login&status=failure&q=denied\"\nthreshold = 20\nwindow = \"10m\"\n\n\
         [[alerts]]\nname = \"high\"\nwebhook = \"chat\"\nfinding_severity = \"high\"\n"
    );
    let (code, out, err) = check(tmp.path(), &text, true);
    assert_eq!(code, 0, "{err}");
    let printed: toml::Table = toml::from_str(&out).expect("TOML");
    let hooks = printed["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0]["timeout_secs"].as_integer(), Some(10));
    assert_eq!(hooks[1]["format"].as_str(), Some("slack"));
    let alerts = printed["alerts"].as_array().unwrap();
    assert_eq!(alerts[0]["window"].as_str(), Some("10m"));
    assert_eq!(alerts[1]["finding_severity"].as_str(), Some("high"));
}

#[test]
fn bad_alert_sections_are_refused_by_key() {
    let tmp = tempfile::tempdir().unwrap();
    let rule = |body: &str| format!("{HOOK}\n[[alerts]]\nname = \"r\"\n{body}");
    let cases = [
        (rule("webhook = \"pager\"\nfinding_kind = \"new_ip\"\n"), "alerts[0].webhook: no [[webhooks]] entry is named \"pager\""),
        (rule("webhook = \"ops\"\nfilter = \"action=a\"\nthreshold = 0\nwindow = \"1m\"\n"), "alerts[0].threshold: must be 1 to 1000000, got 0"),
        (rule("webhook = \"ops\"\nfilter = \"action=a\"\nthreshold = 5\n"), "alerts[0].window: a threshold rule needs a window"),
        (rule("webhook = \"ops\"\nfilter = \"action=a\"\nthreshold = 5\nwindow = \"1w\"\n"), "alerts[0].window: \"1w\" is not a window"),
        (rule("webhook = \"ops\"\nfilter = \"hours=2\"\nthreshold = 5\nwindow = \"1m\"\n"), "alerts[0].filter: `hours` has no place"),
        (rule("webhook = \"ops\"\nfilter = \"status=maybe\"\nthreshold = 5\nwindow = \"1m\"\n"), "alerts[0].filter: invalid parameter `status`"),
        (rule("webhook = \"ops\"\nfinding_severity = \"critical\"\n"), "alerts[0].finding_severity: \"critical\" is not a severity"),
        (rule("webhook = \"ops\"\nfinding_kind = \"x\"\nthreshold = 1\n"), "alerts[0]: give either filter"),
        (rule("webhook = \"ops\"\nfinding_kind = \"x\"\ncolour = \"red\"\n"), "colour"),
        (
            "[[webhooks]]\nname = \"ops\"\nurl = \"ftp://example.com/\"\nsecret = \"0123456789abcdef\"\n".into(),
            "webhooks[0].url: \"ftp://example.com/\" must start with http:// or https://",
        ),
        (
            "[[webhooks]]\nname = \"ops\"\nurl = \"https://example.com/\"\n".into(),
            "webhooks[0].secret: a webhook of format \"stele\" needs a secret",
        ),
        (
            "[[webhooks]]\nname = \"ops\"\nurl = \"https://example.com/\"\nsecret_file = \"/nonexistent/stele-secret\"\n".into(),
            "webhooks[0].secret_file: cannot read /nonexistent/stele-secret",
        ),
    ];
    for (text, want) in cases {
        let (code, _, err) = check(tmp.path(), &text, false);
        assert_eq!(code, 1, "{text}\n{err}");
        assert!(err.contains(want), "{text}\nwanted {want:?} in:\n{err}");
    }
}
