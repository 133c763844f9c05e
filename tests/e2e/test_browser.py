"""The pages in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright for
Python, against the real stack behind nginx (`live_stack`).

Sign in, submit demo.count from the form and watch the bar reach 100% and the state read
succeeded; new jobs appearing on the jobs page without a reload; cancel from the job's page;
kill the ws process while a job runs and see the page recover with every log line exactly
once; client and server validation messages next to the fields; the staff page. The test
run takes the screenshots the README shows; `make screenshots` (UPDATE_SCREENSHOTS=1) writes
them to docs/img/jobs.png and docs/img/job.png, any other run to a temporary folder, so
`make test` leaves the checkout as it found it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from jobcast.cli.stack import port_open
from tests.support import wait_until

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "img" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else Path(
    tempfile.mkdtemp(prefix="jobcast-screenshots-"))
CHROMIUM = "/usr/bin/chromium"


def assert_screenshot(path: Path) -> None:
    """A real picture of the page: a PNG of the browser's size, not an empty or blank file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, (path, len(data))
# Headless as root on a machine whose network is closed: without the background-networking
# flags Chromium keeps trying (and failing) to reach Google's hosts.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "browser-password"
TIMEOUT_MS = 30_000


def chromium_or_skip() -> str:
    """Debian's Chromium (scripts/system-deps installs it for make test); CI must have it."""
    path = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if path is None:
        message = "the browser tests need Chromium: apt-get install chromium (make test does this as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from playwright import sync_api as playwright_api
    except ImportError:  # pip install -e '.[dev]' brings it
        if os.environ.get("CI"):
            pytest.fail("the browser tests need playwright (pip install -e '.[dev]')")
        pytest.skip("the browser tests need playwright (pip install -e '.[dev]')")
    executable = chromium_or_skip()
    with playwright_api.sync_playwright() as playwright:
        # launch() gives every run a fresh, temporary user-data-dir of its own.
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def make_user(stack, username: str, *, staff: bool = False) -> str:
    """A user with a password (and an API token for setting up jobs); returns the token."""
    token = stack.token(username)
    code = (f"from django.contrib.auth import get_user_model; u = get_user_model().objects.get(username={username!r}); "
            f"u.set_password({PASSWORD!r}); u.is_staff = {staff}; u.save()")
    done = stack.jobcast("manage", "shell", "-c", code)
    assert done.returncode == 0, done.stderr
    return token


class Page:
    """A signed-in browser tab and what went wrong in it (script errors, failed requests)."""

    def __init__(self, browser, stack, username: str):
        self.context = browser.new_context(base_url=stack.url, viewport={"width": 1200, "height": 760})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", lambda msg: self.errors.append(f"console {msg.type}: {msg.text}")
                     if msg.type == "error" and "WebSocket" not in msg.text else None)
        self.sign_in(username)

    def sign_in(self, username: str) -> None:
        page = self.page
        page.goto("/")
        page.get_by_role("link", name="Sign in").click()
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/jobs/")
        assert page.get_by_text(f"Signed in as {username}").is_visible()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser, live_stack):
    pages = []

    def open_as(username: str) -> Page:
        page = Page(browser, live_stack, username)
        pages.append(page)
        return page

    yield open_as
    errors = [error for page in pages for error in page.errors]
    for page in pages:
        page.close()
    assert errors == [], errors  # no script error on any page


def bar_value(locator) -> float | None:
    value = locator.get_attribute("aria-valuenow")
    return None if value is None else float(value)


def submit(client, **params) -> str:
    response = client.post("/api/jobs/", json={"kind": "demo.count", "params": params})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_sign_in_submit_from_the_form_and_watch_it_succeed(live_stack, open_page):
    make_user(live_stack, "browser-alice")
    tab = open_page("browser-alice")
    page = tab.page
    page.get_by_role("link", name="New job").first.click()
    page.wait_for_url("**/jobs/new/")
    assert page.get_by_label("Kind").input_value() == "demo.count"
    page.get_by_label("Steps").fill("40")
    page.get_by_label("Interval Ms").fill("100")
    page.get_by_label("Log Every").fill("10")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}/$"))

    bar = page.get_by_role("progressbar")
    assert bar.get_attribute("aria-label").startswith("Progress of demo.count job")
    # Live: the bar moves while the job runs, the indicator says so, and an ETA is shown.
    wait_until(lambda: (bar_value(bar) or 0) >= 40, 30, "the bar to pass 40%", interval=0.1)
    assert page.locator("#connection").get_attribute("data-status") == "live"
    assert page.locator("#connection").inner_text() == "Live"
    assert re.fullmatch(r"\d+ s|\d+ min \d+ s", page.locator("#job-eta").inner_text())
    assert page.locator("#job-message").inner_text().startswith("step ")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "job.png"))
    assert_screenshot(SCREENSHOTS / "job.png")

    state = page.locator("#job-state")
    wait_until(lambda: state.inner_text() == "succeeded", 30, "the state to read succeeded", interval=0.1)
    assert bar_value(bar) == 100 and bar.get_attribute("aria-valuetext") == "100%: step 40"
    assert page.locator("#job-result").inner_text() == '{\n  "counted": 40\n}'
    assert page.locator("#log li [data-line]").all_inner_texts() == [f"reached step {n} of 40" for n in (10, 20, 30, 40)]
    assert page.locator("#log li").count() == 4
    assert page.locator("#cancel-form").is_hidden()
    assert page.locator("#connection").inner_text() == "Finished"

    # The jobs page lists it, finished, with a full bar.
    page.get_by_role("link", name="My jobs").first.click()
    row = page.locator("tr[data-job-id]").first
    assert row.locator("[data-state-badge]").inner_text() == "succeeded"
    assert bar_value(row.get_by_role("progressbar")) == 100


def test_the_jobs_page_shows_new_jobs_live_without_a_reload(live_stack, open_page):
    token = make_user(live_stack, "browser-bob")
    tab = open_page("browser-bob")
    page = tab.page
    wait_until(lambda: page.locator("#connection").get_attribute("data-status") == "live", 10, "the page to go live")
    assert page.locator("#no-jobs").is_visible()
    with live_stack.client("browser-bob") as client:
        ids = [submit(client, steps=steps, interval_ms=interval) for steps, interval in
               ((40, 60), (40, 90), (40, 140), (200, 100), (10, 10))]
        assert client.headers["Authorization"] == f"Bearer {token}"
    rows = page.locator("tr[data-job-id]")
    wait_until(lambda: rows.count() == len(ids), 15, "the new jobs to appear", interval=0.1)
    assert [rows.nth(i).get_attribute("data-job-id") for i in range(len(ids))] == ids[::-1]  # newest first
    assert page.locator("#no-jobs").is_hidden()
    # Bars move without a reload; take the README's screenshot with jobs at several stages.
    first_bar = page.locator(f'tr[data-job-id="{ids[0]}"]').get_by_role("progressbar")
    wait_until(lambda: 30 <= (bar_value(first_bar) or 0) < 100, 30, "the first job's bar to move", interval=0.05)
    page.screenshot(path=str(SCREENSHOTS / "jobs.png"))
    assert_screenshot(SCREENSHOTS / "jobs.png")
    last = page.locator(f'tr[data-job-id="{ids[-1]}"]')
    wait_until(lambda: last.locator("[data-state-badge]").inner_text() == "succeeded", 30, "the short job to succeed",
               interval=0.1)
    assert bar_value(last.get_by_role("progressbar")) == 100
    with live_stack.client("browser-bob") as client:
        client.post(f"/api/jobs/{ids[3]}/cancel/")
    long_row = page.locator(f'tr[data-job-id="{ids[3]}"]')
    wait_until(lambda: long_row.locator("[data-state-badge]").inner_text() == "cancelled", 30, "the cancel to show")


def test_cancel_a_job_from_its_page(live_stack, open_page):
    make_user(live_stack, "browser-carol")
    tab = open_page("browser-carol")
    page = tab.page
    with live_stack.client("browser-carol") as client:
        job_id = submit(client, steps=10000, interval_ms=20)
        page.goto(f"/jobs/{job_id}/")
        state = page.locator("#job-state")
        wait_until(lambda: state.inner_text() == "running", 30, "the job to run", interval=0.1)
        # With the keyboard: focus the button and press Enter.
        page.get_by_role("button", name="Cancel job").focus()
        page.keyboard.press("Enter")
        wait_until(lambda: state.inner_text() == "cancelled", 30, "the state to read cancelled", interval=0.1)
        assert client.get(f"/api/jobs/{job_id}/").json()["state"] == "cancelled"
    assert page.locator("#cancel-form").is_hidden()
    assert page.get_by_role("progressbar").get_attribute("data-state") == "cancelled"
    assert page.locator("#connection").inner_text() == "Finished"


def test_the_page_recovers_when_the_ws_process_is_killed_mid_job(live_stack, open_page):
    make_user(live_stack, "browser-dave")
    tab = open_page("browser-dave")
    page = tab.page
    steps = 40
    with live_stack.client("browser-dave") as client:
        job_id = submit(client, steps=steps, interval_ms=150, log_every=1)
    page.goto(f"/jobs/{job_id}/")
    # Record every status the indicator shows, from inside the page.
    page.evaluate("""() => {
        window.seenStatuses = [];
        const indicator = document.getElementById("connection");
        new MutationObserver(() => window.seenStatuses.push(indicator.dataset.status))
            .observe(indicator, {attributes: true, attributeFilter: ["data-status"]});
    }""")
    lines = page.locator("#log li")
    wait_until(lambda: lines.count() >= 5, 30, "some log lines", interval=0.05)

    (ws_pid,) = live_stack.pids("jobcast.ws.server")
    os.kill(ws_pid, signal.SIGKILL)  # no drain, no close frame: the browser sees 1006
    wait_until(lambda: "reconnecting" in page.evaluate("window.seenStatuses"), 15, "the page to notice the drop",
               interval=0.05)
    state = page.locator("#job-state")
    wait_until(lambda: state.inner_text() == "succeeded", 60, "the job to finish on the page", interval=0.1)

    texts = page.locator("#log li [data-line]").all_inner_texts()
    assert texts == [f"reached step {n} of {steps}" for n in range(1, steps + 1)]  # each once, in order
    seqs = [int(seq) for seq in page.eval_on_selector_all("#log li", "items => items.map(i => i.dataset.seq)")]
    assert seqs == sorted(set(seqs))
    statuses = page.evaluate("window.seenStatuses")
    assert statuses[statuses.index("reconnecting"):][-1] == "closed" and "live" in statuses[statuses.index("reconnecting"):]
    assert bar_value(page.get_by_role("progressbar")) == 100
    # The stack started a new ws process (jobcast run restarts a tier that exits).
    wait_until(lambda: live_stack.pids("jobcast.ws.server") and ws_pid not in live_stack.pids("jobcast.ws.server")
               and port_open(live_stack.ws_port), 30, "the ws tier to be back")


def test_validation_messages_next_to_the_fields(live_stack, open_page):
    make_user(live_stack, "browser-erin")
    tab = open_page("browser-erin")
    page = tab.page
    page.goto("/jobs/new/")
    steps = page.get_by_label("Steps")
    # The page's own check: no request is sent.
    steps.fill("0")
    page.get_by_role("button", name="Submit job").click()
    error = page.locator("#param-steps-error")
    assert error.is_visible() and error.inner_text() == "Input should be greater than or equal to 1."
    assert steps.get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "param-steps"
    assert page.url.endswith("/jobs/new/") and page.get_by_role("alert").is_visible()
    steps.fill("3")
    assert error.is_hidden()  # corrected as typed

    # The server's check (the kind's model): a path that climbs out of the files root.
    page.get_by_label("Kind").select_option("files.checksum")
    page.wait_for_url("**/jobs/new/?kind=files.checksum")
    page.get_by_label("Paths").fill("reports\n../etc/passwd")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_load_state()
    paths_error = page.locator("#param-paths-error")
    assert paths_error.is_visible()
    assert paths_error.inner_text().startswith("Line 2: Value error, must not contain '..'")
    assert page.get_by_label("Paths").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Paths").input_value() == "reports\n../etc/passwd"  # what was typed is kept
    with live_stack.client("browser-erin") as client:
        assert client.get("/api/jobs/").json()["items"] == []


def test_the_staff_page_shows_every_users_jobs_live(live_stack, open_page):
    make_user(live_stack, "browser-staff", staff=True)
    make_user(live_stack, "browser-frank")
    tab = open_page("browser-staff")
    page = tab.page
    page.get_by_role("link", name="All jobs").click()
    page.wait_for_url("**/staff/jobs/")
    wait_until(lambda: page.locator("#connection").get_attribute("data-status") == "live", 10, "the page to go live")
    with live_stack.client("browser-frank") as client:
        job_id = submit(client, steps=20, interval_ms=100)
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    row.wait_for()
    assert row.locator("[data-owner]").inner_text() == "browser-frank"
    wait_until(lambda: re.fullmatch(r"running \d+ s", row.locator("[data-duration]").inner_text()), 30,
               "the row to say how long it has run", interval=0.1)
    wait_until(lambda: row.locator("[data-state-badge]").inner_text() == "succeeded", 30, "the job to succeed", interval=0.1)
    assert bar_value(row.get_by_role("progressbar")) == 100
    assert row.locator("[data-duration]").inner_text() == "ended"


def test_pages_and_the_browser_module_keep_the_front_doors_headers(live_stack):
    """Through nginx: pages are HTML with the security headers; jobcast.js is a JavaScript file a
    browser will run as a module (nosniff needs the right type), from collectstatic's folder."""
    import httpx

    security = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "same-origin"}
    with httpx.Client(base_url=live_stack.url, timeout=30) as client:
        login = client.get("/accounts/login/")
        assert login.status_code == 200 and login.headers["content-type"].startswith("text/html")
        assert {name: login.headers.get(name) for name in security} == security
        assert client.get("/jobs/").status_code == 302  # to the login page
        for path, kind in (("/static/jobcast/jobcast.js", "application/javascript"),
                           ("/static/jobcast/pages.js", "application/javascript"),
                           ("/static/jobcast/jobcast.css", "text/css")):
            response = client.get(path)
            assert response.status_code == 200 and response.headers["content-type"].startswith(kind), path
            assert {name: response.headers.get(name) for name in security} == security
        assert "export function watchJob" in client.get("/static/jobcast/jobcast.js").text
        assert client.get("/static/admin/css/base.css").status_code == 200  # the admin's files too
    assert (live_stack.data_dir / "static" / "jobcast" / "jobcast.js").is_file()
