//! The console in a real browser against a real server with generated
//! data: it loads without a console error and without a request leaving
//! the server's origin.

use super::browser::Browser;
use crate::support::inproc::Server;

#[test]
fn the_console_loads_without_errors_and_asks_nothing_of_other_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let origin = format!("http://{}", d.addr.trim_start_matches("http://"));
    let b = Browser::start();
    b.goto(&format!("{origin}/"));
    let main = b.find("main");
    let text = b.with(|_| main.text()).unwrap();
    assert!(!text.trim().is_empty(), "an empty page");
    let shot = b.screenshot("first-view");
    assert!(shot.exists());
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    for url in b.requested() {
        assert!(
            url.starts_with(&format!("{origin}/")),
            "a request left the origin: {url}"
        );
    }
}
