//! A real browser for the console's tests: Debian's `chromedriver` driving
//! Debian's headless `chromium` (installed by `.ci/run`), over WebDriver
//! (`fantoccini`), on loopback only.
//!
//! [`Browser::start`] starts a driver on a free port and a session with a
//! fresh profile and every background network feature off (the machine has
//! no network; Chromium would otherwise try Google's hosts at every start).
//! Screenshots go to `target/console-screenshots/`.

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The window every view is tested (and photographed) at.
pub const WINDOW: (u32, u32) = (1280, 800);

pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
    downloads: tempfile::TempDir,
}

/// `POST /session/{id}/se/log {"type": "browser"}`: the browser's console
/// messages since the last call (chromedriver's log endpoint).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// A driver and a headless session; panics saying what to install when
    /// Chromium or its driver is missing.
    pub fn start() -> Browser {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: the console tests need Debian's chromium and chromium-driver \
                 (`apt-get install chromium chromium-driver`, which .ci/run does)"
            );
        }
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-extensions",
                    "--disable-default-apps", "--disable-quic",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let caps: serde_json::Map<String, Value> = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let attempt = rt.block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps.clone())
                    .connect(&url),
            );
            match attempt {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("no WebDriver session from chromedriver at {url}: {e}"),
            }
        };
        Browser {
            rt,
            client: Some(client),
            driver,
            _profile: profile,
            downloads,
        }
    }

    /// Runs `f` with the session.
    pub fn with<'a, T, F: Future<Output = T> + 'a>(&'a self, f: impl FnOnce(&'a Client) -> F) -> T {
        self.rt.block_on(f(self.client.as_ref().unwrap()))
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.with(|c| c.goto(url))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.with(|c| {
            c.wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css(css))
        })
        .unwrap_or_else(|e| panic!("no element {css:?} within 10 s: {e}"))
    }

    /// Runs `script` in the page and returns its value.
    pub fn eval(&self, script: &str) -> Value {
        self.with(|c| c.execute(script, vec![]))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The console messages of level SEVERE (errors, CSP violations, failed
    /// loads) since the last call.
    pub fn console_errors(&self) -> Vec<String> {
        let log = self
            .with(|c| c.issue_cmd(BrowserLog))
            .expect("the browser log");
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["level"] == "SEVERE")
            .map(|m| m["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Every URL the page loaded or fetched, the page's own included.
    pub fn requested(&self) -> Vec<String> {
        let v = self.eval(
            "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect()
    }

    /// The next file the browser saves to its download directory, once
    /// complete (Chromium writes `NAME.crdownload` and renames it): its name
    /// and bytes. The file is removed, so the next call waits for a new one.
    pub fn downloaded(&self) -> (String, Vec<u8>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Chromium's partial files: NAME.crdownload, .org.chromium.*. While one
            // exists, the file under the final name may be an empty placeholder.
            let partial = |p: &PathBuf| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with('.') || name.ends_with(".crdownload")
            };
            let all: Vec<PathBuf> = std::fs::read_dir(self.downloads.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            let writing = all.iter().any(partial);
            let done: Vec<PathBuf> = all.into_iter().filter(|p| !partial(p)).collect();
            if let (false, [path]) = (writing, done.as_slice()) {
                let bytes = std::fs::read(path).unwrap();
                std::fs::remove_file(path).unwrap();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                return (name, bytes);
            }
            assert!(done.len() < 2, "more than one download: {done:?}");
            assert!(
                Instant::now() < deadline,
                "nothing was downloaded within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes a screenshot of the window to `target/console-screenshots/NAME.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.with(|c| c.screenshot()).expect("a screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
