//! A headless Chromium for one test, driven over WebDriver (fantoccini) through a chromedriver of
//! its own: a free port, a fresh profile, both killed when the [`Browser`] is dropped, so tests
//! run in parallel threads without sharing anything.
//!
//! Every helper waits (up to [`WAIT`]) rather than sleeps, and a wait that fails panics with the
//! selector, the page's address and text, and the path of a screenshot taken at that moment
//! (`target/ui-screenshots/TEST-failed.png`).

use std::fs::File;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::Server;

/// How long a wait lasts before it fails.
pub const WAIT: Duration = Duration::from_secs(15);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// Chromium's flags: headless, as root in a container (no sandbox, no /dev/shm), and quiet on a
/// closed network (no background connections, updates, sync or QUIC: without them Chromium
/// retries refused connections all through the test).
const CHROMIUM_ARGS: [&str; 10] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,900",
];

/// One test's browser, on one server's UI.
pub struct Browser {
    /// The WebDriver session, for what the helpers do not cover.
    pub client: Client,
    /// The server's address (`http://127.0.0.1:PORT`).
    pub base: String,
    /// The test's name: its screenshots' names start with it.
    test: String,
    driver: Driver,
}

impl Browser {
    /// A new browser (and chromedriver) for the test named `test`, on `server`'s UI. Fails at
    /// once, saying what to do, if Chromium, chromedriver or the built UI is missing.
    pub async fn start(server: &Server, test: &str) -> Browser {
        let (status, page) = crate::answer(reqwest::get(server.url("/")).await.unwrap()).await;
        assert_eq!(status, 200, "the server has no web UI to test ({page}): run scripts/build-web.sh");
        let driver = Driver::start();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", driver.profile.path().display()));
        capabilities.insert("goog:chromeOptions".into(), json!({"binary": driver.chromium, "args": args}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("no Chromium session from chromedriver: {e}\n{}", driver.log_tail()));
        Browser { client, base: server.base.clone(), test: test.to_string(), driver }
    }

    /// Opens `path` (`/`, `/dags/x`) of the server.
    pub async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        if let Err(e) = self.client.goto(&url).await {
            self.fail(&format!("could not open {url}: {e}")).await;
        }
    }

    /// Logs in on the login form with `token` and waits for the header's `#whoami`. Opens `/`
    /// first unless the login form is already shown.
    pub async fn login_with_token(&self, token: &str) {
        self.open_login().await;
        if self.find_shown("#login-token").await.is_none() {
            self.click("#login-mode-token").await;
        }
        self.fill("#login-token", token).await;
        self.click("#login-submit").await;
        self.wait_for("#whoami").await;
    }

    /// Logs in with a user name and password and waits for the header's `#whoami`.
    pub async fn login_with_password(&self, user: &str, password: &str) {
        self.submit_password(user, password).await;
        self.wait_for("#whoami").await;
    }

    /// Fills the login form's user name and password and submits it (and waits for nothing: the
    /// test says what should follow).
    pub async fn submit_password(&self, user: &str, password: &str) {
        self.open_login().await;
        if self.find_shown("#login-username").await.is_none() {
            self.click("#login-mode-password").await;
        }
        self.fill("#login-username", user).await;
        self.fill("#login-password", password).await;
        self.click("#login-submit").await;
    }

    async fn open_login(&self) {
        if self.find_shown("#login-form").await.is_none() {
            self.goto("/").await;
        }
        self.wait_for("#login-form").await;
    }

    /// The first element `css` selects that is shown, once there is one.
    pub async fn wait_for(&self, css: &str) -> Element {
        match self.poll(|| self.find_shown(css)).await {
            Some(element) => element,
            None => self.fail(&format!("nothing shown matches {css:?} after {WAIT:?}")).await,
        }
    }

    /// The first element `css` selects that is shown and whose text contains `text`, once there
    /// is one.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> Element {
        let found = self
            .poll(|| async {
                for element in self.client.find_all(Locator::Css(css)).await.ok()? {
                    let shown = element.is_displayed().await.unwrap_or(false);
                    if shown && element.text().await.is_ok_and(|t| t.contains(text)) {
                        return Some(element);
                    }
                }
                None
            })
            .await;
        match found {
            Some(element) => element,
            None => {
                let now = match self.find_shown(css).await {
                    Some(e) => format!("its text is {:?}", e.text().await.unwrap_or_default()),
                    None => "nothing shown matches it".to_string(),
                };
                self.fail(&format!("no {css:?} with the text {text:?} after {WAIT:?} ({now})")).await
            }
        }
    }

    /// Waits until nothing `css` selects is shown.
    pub async fn wait_gone(&self, css: &str) {
        let gone = self.poll(|| async { self.find_shown(css).await.is_none().then_some(()) }).await;
        if gone.is_none() {
            self.fail(&format!("{css:?} is still shown after {WAIT:?}")).await;
        }
    }

    /// Clicks the first shown element `css` selects, once there is one.
    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        if let Err(e) = element.click().await {
            self.fail(&format!("could not click {css:?}: {e}")).await;
        }
    }

    /// Replaces the value of the input `css` selects with `text`, as typed.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        if let Err(e) = async {
            element.clear().await?;
            element.send_keys(text).await
        }
        .await
        {
            self.fail(&format!("could not type into {css:?}: {e}")).await;
        }
    }

    /// The text of the first shown element `css` selects, once there is one.
    pub async fn text(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        element.text().await.unwrap_or_default()
    }

    /// Runs `script` in the page (a function body: `return` gives the value; `arguments[i]` are
    /// `args`).
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        match self.client.execute(script, args).await {
            Ok(value) => value,
            Err(e) => self.fail(&format!("the script failed: {e}\n{script}")).await,
        }
    }

    /// The page's address.
    pub async fn url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_else(|e| format!("(no address: {e})"))
    }

    /// Saves what the window shows as `target/ui-screenshots/NAME.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("no screenshot {name}: {e}"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// Fails the test with `what`, the page's address and text, and a screenshot
    /// (`TEST-failed.png`).
    pub async fn fail(&self, what: &str) -> ! {
        let url = self.url().await;
        let text = match self.client.execute("return document.body ? document.body.innerText : ''", vec![]).await {
            Ok(Value::String(text)) => sandflow_core::text::shorten(&text, 2000).into_owned(),
            Ok(other) => other.to_string(),
            Err(e) => format!("(no text: {e})"),
        };
        let shot = match self.client.screenshot().await {
            Ok(png) => {
                let dir = screenshot_dir();
                let path = dir.join(format!("{}-failed.png", self.test));
                match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, png)) {
                    Ok(()) => path.display().to_string(),
                    Err(e) => format!("(not saved: {e})"),
                }
            }
            Err(e) => format!("(none: {e})"),
        };
        panic!("{}: {what}\n  page: {url}\n  screenshot: {shot}\n  page text:\n{text}\n", self.test)
    }

    /// Ends the WebDriver session (Chromium closes), then the chromedriver. Dropping the browser
    /// kills both instead.
    pub async fn close(self) {
        let Browser { client, driver, .. } = self;
        let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
        drop(driver);
    }

    async fn find_shown(&self, css: &str) -> Option<Element> {
        for element in self.client.find_all(Locator::Css(css)).await.ok()? {
            if element.is_displayed().await.unwrap_or(false) {
                return Some(element);
            }
        }
        None
    }

    /// `look` until it finds something or [`WAIT`] has passed.
    async fn poll<T, F, Fut>(&self, mut look: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = look().await {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// `target/ui-screenshots` (of `CARGO_TARGET_DIR` if set, else of the workspace).
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("ui-screenshots")
}

/// A chromedriver on a free loopback port, in a process group of its own with the Chromium it
/// starts: dropped, the whole group is killed.
struct Driver {
    child: Child,
    url: String,
    chromium: String,
    log: PathBuf,
    /// Chromium's profile and the driver's log.
    profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let chromedriver = program("SANDFLOW_TEST_CHROMEDRIVER", "/usr/bin/chromedriver", "chromium-driver");
        let chromium = program("SANDFLOW_TEST_CHROMIUM", "/usr/bin/chromium", "chromium");
        // A port another test could take between here and the driver's bind: then the driver
        // exits at once, and the next port is tried (with a fresh profile).
        let mut last_log = String::new();
        for _ in 0..5 {
            let profile = tempfile::tempdir().unwrap();
            let log = profile.path().with_extension("chromedriver.log");
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let output = File::create(&log).unwrap();
            let child = Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("{chromedriver}: {e}: scripts/install-deps.sh installs it"));
            let url = format!("http://127.0.0.1:{port}");
            let mut driver = Driver { child, url, chromium: chromium.clone(), log, profile };
            if driver.wait_ready() {
                return driver;
            }
            last_log = driver.log_tail();
        }
        panic!("chromedriver did not start on any of 5 ports:\n{last_log}");
    }

    /// Whether the driver answers `/status` (false if it exited: its port was taken).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = format!("{}/status", self.url);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if answers_ok(&status) {
                return true;
            }
            std::thread::sleep(POLL);
        }
        panic!("chromedriver answered nothing on {} in 20 s:\n{}", self.url, self.log_tail());
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        let start = (start..log.len()).find(|i| log.is_char_boundary(*i)).unwrap_or(log.len());
        format!("chromedriver's log ({}):\n{}", self.log.display(), &log[start..])
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The driver's group: the driver, Chromium and Chromium's helpers (ids of our own child).
        let group = self.child.id() as libc::pid_t;
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether `GET url` (`http://127.0.0.1:PORT/PATH`) answers 200, over a plain socket: the
/// driver's readiness, checked from sync code.
fn answers_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut stream) = std::net::TcpStream::connect(host) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    // The status line is enough (the driver may keep the connection open after its answer).
    let mut answer = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok() && stream.read_exact(&mut answer).is_ok() && &answer == b"HTTP/1.1 200"
}

/// The path of a program from `variable`, else `default`; a failure naming the package if it
/// is not there.
fn program(variable: &str, default: &str, package: &str) -> String {
    let path = std::env::var(variable).unwrap_or_else(|_| default.to_string());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing ({variable} names another): scripts/install-deps.sh installs it (Debian's {package})"
    );
    path
}
