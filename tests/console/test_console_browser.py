#!/usr/bin/env python3
"""mx-console in a real browser (Debian's chromium + chromium-driver, python3-selenium, headless)
against a private stack from scripts/mx-stack: login, the connector form, mailboxes, swaks -> 250
and the dashboard count rising, today's count on the connectors list, a CSV import refused line by
line then accepted, a <script>-bearing subject shown escaped in ImportFailed and doctor's finding
about it on the dashboard, retry after adding the mailbox, the log report with a hostile log
line shown as text, a Google mailbox's OAuth2 state and new credentials, CSRF and session
refusals, the read-only role. Saves a screenshot of
each page into docs/console/ (shown in docs/console.md). Exit 77 (skipped) only when chromium,
chromium-driver or selenium are not installed."""
import argparse
import glob
import http.cookiejar
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77


def wait_for(fn, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError("timed out waiting for " + what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--port", type=int, default=2630)
    ap.add_argument("--http-port", type=int, default=8630)
    ap.add_argument("--dir", default="")
    a = ap.parse_args()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import Select
    except ImportError:
        print("SKIP: python3-selenium is not installed (apt-get install python3-selenium)")
        return SKIP
    chromium = shutil.which("chromium")
    driver_bin = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not chromium or not os.path.exists(driver_bin):
        print("SKIP: chromium / chromium-driver are not installed (apt-get install chromium chromium-driver)")
        return SKIP

    d = a.dir or f"/tmp/mx-console-test-{a.port}"
    subprocess.run([f"{a.root}/scripts/mx-stack", "stop", d], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)
    shots = os.path.join(a.root, "docs", "console")
    os.makedirs(shots, exist_ok=True)
    def stack_start(*extra):
        for attempt in range(3):  # a Postfix of a stack stopped just before may still be exiting
            r = subprocess.run([f"{a.root}/scripts/mx-stack", "start", d, "--port", str(a.port),
                                "--build", a.build, *extra], capture_output=True, text=True)
            if r.returncode == 0:
                return
            print("mx-stack start failed:", r.stdout[-1500:], r.stderr[-1500:])
            time.sleep(3)
        raise AssertionError("mx-stack start failed three times")
    stack_start()
    cfg = os.path.join(d, "mx-connector.toml")
    with open(cfg, "a") as f:
        f.write(f'\n[console]\nlisten = "127.0.0.1:{a.http_port}"\nsample_seconds = 1\n'
                f'doctor_seconds = 10\npostfix_log = "{d}/log/maillog"\n')
    mxctl = lambda *args, check=True: subprocess.run(
        [f"{a.build}/admin/mxctl", "--config", cfg, *args], check=check, capture_output=True, text=True)
    mxctl("console", "user", "add", "admin", "--password", "admin-password-1")
    mxctl("console", "user", "add", "viewer", "--read-only", "--password", "viewer-password-1")
    drop = os.path.join(d, "drop", "shop")
    for sub in ("", "tmp", "new"):
        subprocess.run(["install", "-d", "-o", "mxconnector", "-g", "mxconnector", "-m", "0750",
                        os.path.join(drop, sub)], check=True)
    # Again, now with the console (the [console] section above is kept).
    stack_start("--console", str(a.http_port))
    base = f"http://127.0.0.1:{a.http_port}"
    driver = None
    try:
        def up():
            try:
                urllib.request.urlopen(base + "/login", timeout=2)
                return True
            except OSError:
                return False
        wait_for(up, 20, "mx-console to answer")
        o = webdriver.ChromeOptions()
        o.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                    "--disable-dev-shm-usage", f"--user-data-dir={d}/chromium"):
            o.add_argument(arg)
        driver = webdriver.Chrome(service=Service(driver_bin), options=o)
        driver.implicitly_wait(5)
        run(a, d, cfg, mxctl, drop, base, driver, shots, By, Select, Keys)
        print("console browser test: all checks passed")
        return 0
    except Exception:
        with open(os.path.join(d, "log", "mx-console.log")) as f:
            print("--- mx-console.log\n" + f.read()[-3000:])
        raise
    finally:
        if driver:
            driver.quit()
        subprocess.run([f"{a.root}/scripts/mx-stack", "stop", d], capture_output=True)


def login(driver, base, By, user, password):
    driver.get(base + "/login")
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()
    try:
        wait_for(lambda: driver.find_elements(By.ID, "who"), 10, "the dashboard after login")
    except AssertionError:
        print("login failed at", driver.current_url, driver.page_source[:1500])
        raise


def post_with_session(driver, base, path, fields):
    """POSTs a form outside the browser with the browser's session cookie; returns the status."""
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    req = urllib.request.Request(base + path, data=urllib.parse.urlencode(fields).encode(),
                                 headers={"Cookie": cookie})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kw):
            return None
    try:
        r = urllib.request.build_opener(NoRedirect).open(req, timeout=10)
        return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def submits(driver, By, action):
    """Runs an action that submits a form and waits until the next page replaced this one."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    old = driver.find_element(By.TAG_NAME, "html")
    action()

    def replaced(_):
        # Chromium answers for a node of a document being replaced either "stale element" or,
        # mid-navigation, "Node with given id does not belong to the document": both mean gone.
        try:
            old.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise

    WebDriverWait(driver, 15).until(replaced)


def total(driver, base, By, key):
    driver.get(base + "/")
    return int(driver.find_element(By.ID, "total-" + key).text)


def run(a, d, cfg, mxctl, drop, base, driver, shots, By, Select, Keys):
    shot = lambda name: driver.save_screenshot(os.path.join(shots, name + ".png"))
    # Without a session every page leads to the login form.
    for path in ("/", "/connectors", "/mailboxes", "/failed", "/check?address=x@y.test"):
        driver.get(base + path)
        assert driver.current_url == base + "/login", (path, driver.current_url)
    shot("login")
    login(driver, base, By, "admin", "admin-password-1")

    # Create a connector through the form (Generic authentication shows its detail area).
    driver.get(base + "/connectors")
    driver.find_element(By.ID, "new-connector").click()
    driver.find_element(By.ID, "name").send_keys("shop")
    driver.find_element(By.ID, "drop_folder").send_keys(drop)
    driver.find_element(By.ID, "domains").send_keys("shop.test")
    driver.find_element(By.ID, "smtp_port").send_keys("25")
    generic = driver.find_element(By.CSS_SELECTOR, "fieldset[data-auth=generic]")
    assert not generic.is_displayed(), "generic details shown for method None"
    Select(driver.find_element(By.ID, "auth")).select_by_value("generic")
    assert generic.is_displayed(), "generic details hidden for method Generic"
    driver.find_element(By.ID, "username").send_keys("relay-user")
    shot("connector-form")
    submits(driver, By, lambda: driver.find_element(By.ID, "username").send_keys(Keys.ENTER))
    if not driver.find_elements(By.ID, "ok"):
        print("save failed at", driver.current_url, driver.page_source[-3000:])
    assert "connector shop saved" in driver.find_element(By.ID, "ok").text
    out = mxctl("connector", "show", "shop", "--json").stdout
    assert '"relay-user"' in out and '"generic"' in out, out
    # A refusal is as clear as mxctl's and changes nothing.
    driver.get(base + "/connectors/edit")
    driver.find_element(By.ID, "name").send_keys("bad name")
    submits(driver, By, lambda: driver.find_element(By.ID, "drop_folder").send_keys(drop + Keys.ENTER))
    assert driver.find_element(By.ID, "err").text, "no validation message"
    driver.get(base + "/connectors")
    assert "shop.test" in driver.find_element(By.ID, "connectors").text
    shot("connectors")

    # Add a mailbox; mail to it is accepted and the dashboard's count rises.
    driver.get(base + "/mailboxes")
    driver.find_element(By.ID, "address").send_keys("buyer@shop.test")
    Select(driver.find_element(By.ID, "mailbox-connector")).select_by_value("shop")
    submits(driver, By, driver.find_element(By.ID, "add").click)
    assert "buyer@shop.test" in driver.find_element(By.ID, "mailboxes").text
    shot("mailboxes")
    before = total(driver, base, By, "accepted")
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{a.port}", "--from", "alice@sender.test",
                        "--to", "buyer@shop.test", "--header", "Subject: hello"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and re.search(r"^<-  250 ", r.stdout, re.M), r.stdout[-2000:]
    wait_for(lambda: total(driver, base, By, "accepted") > before, 20, "the dashboard's accepted count to rise")
    wait_for(lambda: total(driver, base, By, "imported") >= 1, 30, "the import")
    time.sleep(2.5)  # two more history points, so the chart has a line
    driver.get(base + "/")
    wait_for(lambda: driver.find_element(By.ID, "history").get_attribute("data-drawn") == "yes", 10,
             "the history chart")
    # Today's counts on the connectors list (since midnight: the stack's segment is new).
    driver.get(base + "/connectors")
    assert int(driver.find_element(By.CSS_SELECTOR, "#connectors td.today-accepted").text) >= 1
    bulk_import(driver, base, By, d, mxctl, shot)

    # A file for a recipient without a mailbox (accepted, then the mailbox went) fails alone.
    subject = '<script>alert("x")</script> & <b>bold</b>'
    name = "1.M1P1.console"
    msg = (f"Return-Path: <mallory@sender.test>\nX-Original-To: late@shop.test\n"
           f"Delivered-To: late@shop.test\nFrom: mallory@sender.test\nTo: late@shop.test\n"
           f"Subject: {subject}\nMessage-ID: <console-1@sender.test>\n\nhello\n")
    with open(os.path.join(drop, "tmp", name), "w") as f:
        f.write(msg)
    shutil.chown(os.path.join(drop, "tmp", name), "mxconnector", "mxconnector")
    os.rename(os.path.join(drop, "tmp", name), os.path.join(drop, "new", name))

    def listed():
        driver.get(base + "/failed")
        return driver.find_elements(By.CSS_SELECTOR, "#failed td.subject")
    cells = wait_for(listed, 30, "the file in ImportFailed")
    assert cells[0].text == subject, cells[0].text  # shown as text, never run as markup
    assert not driver.find_elements(By.CSS_SELECTOR, "#failed td.subject b")
    assert "&lt;script&gt;" in driver.page_source
    assert "late@shop.test" in driver.find_element(By.ID, "failed").text
    shot("importfailed")
    # The dashboard shows doctor's finding about it (mxctl doctor, run in the background).
    driver.get(base + "/")
    again = driver.find_element(By.ID, "doctor-refresh")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", again)
    submits(driver, By, again.click)

    def doctor_says():
        driver.get(base + "/")
        rows = driver.find_elements(By.CSS_SELECTOR, "#doctor-findings tr.doctor-warn")
        return [r.text for r in rows if "ImportFailed" in r.text]
    wait_for(doctor_says, 90, "the doctor finding about ImportFailed on the dashboard")
    wait_for(lambda: driver.find_element(By.ID, "history").get_attribute("data-drawn") == "yes", 10,
             "the history chart")
    shot("dashboard")
    driver.get(base + "/failed")
    submits(driver, By, driver.find_element(By.LINK_TEXT, "Headers").click)
    assert "Subject: " + subject in driver.find_element(By.ID, "headers").text
    shot("headers")

    # Retry after adding the mailbox imports it.
    mxctl("mailbox", "add", "late@shop.test", "--connector", "shop")
    driver.get(base + "/failed")
    submits(driver, By, driver.find_element(By.CSS_SELECTOR, "#failed button.retry").click)
    assert "queued for import again" in driver.find_element(By.ID, "ok").text
    maildir = os.path.join(d, "mail", "shop.test", "late", "new")
    wait_for(lambda: glob.glob(maildir + "/*"), 30, "the retried message in " + maildir)
    driver.get(base + "/failed")
    assert driver.find_element(By.ID, "backlog").text == "0"

    # Check an address: the same answer as mxctl check.
    driver.get(base + "/check?address=" + urllib.parse.quote("nobody@shop.test"))
    want = mxctl("check", "nobody@shop.test", check=False).stdout
    assert driver.find_element(By.ID, "r-decision").text == "reject"
    assert driver.find_element(By.ID, "r-reply").text in want, (want,)
    shot("check")
    log_report(driver, base, By, d, shot)
    oauth_page(driver, base, By, d, mxctl, shot)

    # A form posted without (or with a wrong) CSRF token is refused and changes nothing.
    status, body = post_with_session(driver, base, "/mailboxes/add",
                                     {"address": "csrf@shop.test", "connector": "shop"})
    assert status == 403 and "CSRF" in body, (status, body)
    status, _ = post_with_session(driver, base, "/mailboxes/add",
                                  {"address": "csrf@shop.test", "connector": "shop", "csrf": "0" * 64})
    assert status == 403
    assert mxctl("mailbox", "show", "csrf@shop.test", check=False).returncode != 0

    # Log out: the session is gone.
    driver.get(base + "/")
    submits(driver, By, driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click)
    driver.get(base + "/mailboxes")
    assert driver.current_url == base + "/login"

    # A read-only account sees, but cannot change anything (even with a valid CSRF token).
    login(driver, base, By, "viewer", "viewer-password-1")
    driver.get(base + "/connectors")
    assert not driver.find_elements(By.ID, "new-connector")
    driver.get(base + "/mailboxes")
    assert not driver.find_elements(By.ID, "add-mailbox")
    csrf = driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] input[name=csrf]").get_attribute("value")
    for path, fields in (("/mailboxes/add", {"address": "ro@shop.test", "connector": "shop"}),
                         ("/mailboxes/remove", {"address": "buyer@shop.test"}),
                         ("/connectors/active", {"name": "shop", "active": "no"}),
                         ("/mailboxes/import", {"text": "address,connector\nro2@shop.test,shop\n"}),
                         ("/mailboxes/oauth/save", {"address": "buyer@shop.test", "client_id": "x"}),
                         ("/connectors/save", {"name": "ro", "drop_folder": drop})):
        status, body = post_with_session(driver, base, path, dict(fields, csrf=csrf))
        assert status == 403 and "read-only" in body, (path, status, body)
    assert mxctl("mailbox", "show", "buyer@shop.test", check=False).returncode == 0
    assert '"active": true' in mxctl("connector", "show", "shop", "--json").stdout

    # Wrong passwords are throttled after five tries.
    def error_text():
        try:
            return driver.find_element(By.ID, "error").text
        except Exception:  # the page is being replaced
            return ""
    seen = []
    for i in range(6):
        driver.get(base + "/login")
        driver.find_element(By.ID, "user").send_keys("admin")
        driver.find_element(By.ID, "password").send_keys("wrong-password")
        submits(driver, By, driver.find_element(By.ID, "login").click)
        seen.append(wait_for(error_text, 10, "the answer to a wrong password"))
    assert seen[:5] == ["Wrong name or password."] * 5, seen
    assert "Too many failed logins" in seen[5], seen

def bulk_import(driver, base, By, d, mxctl, shot):
    """CSV upload: one refused line refuses the file, every refused line is listed."""
    bad = os.path.join(d, "import-bad.csv")
    with open(bad, "w") as f:
        f.write("address,connector\nbulk1@shop.test,shop\nnot an address,shop\n"
                "bulk2@shop.test,nowhere\n<b>x</b>@shop.test,shop\n")
    driver.get(base + "/mailboxes")
    driver.find_element(By.CSS_SELECTOR, "#import-box summary").click()
    driver.find_element(By.ID, "import-file").send_keys(bad)
    submits(driver, By, driver.find_element(By.ID, "import").click)
    errors = driver.find_element(By.ID, "import-errors").text
    for want in ("import-bad.csv: line 3: invalid address", "line 4: no connector named 'nowhere'",
                 "line 5: invalid address '<b>x</b>@shop.test'"):
        assert want in errors, (want, errors)
    assert not driver.find_elements(By.CSS_SELECTOR, "#import-errors b")
    assert mxctl("mailbox", "show", "bulk1@shop.test", check=False).returncode != 0
    driver.find_element(By.CSS_SELECTOR, "#import-box summary").click()
    shot("import")
    # Pasted lines: all of them in one go.
    driver.find_element(By.ID, "import-text").send_keys(
        "address,connector\nbulk1@shop.test,shop\nbulk2@shop.test,shop\n")
    submits(driver, By, driver.find_element(By.ID, "import").click)
    assert "2 mailboxes imported" in driver.find_element(By.ID, "ok").text
    for box in ("bulk1@shop.test", "bulk2@shop.test"):
        assert mxctl("mailbox", "show", box, check=False).returncode == 0, box


def log_report(driver, base, By, d, shot):
    """The log report of the stack's maillog, with a hostile line shown as text."""
    hostile = '"<script>alert(1)</script>"@shop.test'
    stamp = time.strftime("%b %e %H:%M:%S")
    with open(os.path.join(d, "log", "maillog"), "a") as f:
        f.write(f"{stamp} mx postfix/smtpd[4242]: NOQUEUE: reject: RCPT from unknown[192.0.2.66]: "
                f"550 5.1.1 <{hostile}>: Recipient address rejected: User unknown; "
                f"from=<a@sender.test> to=<{hostile}> proto=ESMTP helo=<evil>\n")
    driver.get(base + "/log")
    cells = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#log-top-recipients td.hostile")]
    assert hostile in cells, (cells, driver.page_source[-3000:])
    assert not driver.find_elements(By.CSS_SELECTOR, "#log-top-recipients script")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in driver.page_source
    assert int(driver.find_element(By.ID, "log-rejected").text) >= 1
    wait_for(lambda: driver.find_element(By.ID, "log-hourly").get_attribute("data-drawn") == "yes",
             10, "the log report's hourly chart")
    shot("logreport")


def oauth_page(driver, base, By, d, mxctl, shot):
    """A Google mailbox: its state, new credentials through the form, no secret shown."""
    gdrop = os.path.join(d, "drop", "gmail")
    subprocess.run(["install", "-d", "-o", "mxconnector", "-g", "mxconnector", "-m", "0750", gdrop],
                   check=True)
    mxctl("connector", "add", "gmail", "--drop-folder", gdrop, "--domain", "g.test")
    mxctl("connector", "set", "gmail", "smtp.auth=google")
    mxctl("mailbox", "add", "boss@g.test", "--connector", "gmail")
    driver.get(base + "/mailboxes?q=boss")
    assert "google: no client id" in driver.find_element(By.CSS_SELECTOR, "a.oauth-state").text
    submits(driver, By, driver.find_element(By.CSS_SELECTOR, "a.oauth-state").click)
    driver.find_element(By.ID, "client_id").send_keys("client-42")
    driver.find_element(By.ID, "refresh_token").send_keys("SECRET-REFRESH-42")
    submits(driver, By, driver.find_element(By.ID, "oauth-save").click)
    assert "credentials of boss@g.test saved" in driver.find_element(By.ID, "ok").text
    assert driver.find_element(By.ID, "oauth-summary").text == "not yet used"
    assert "SECRET-REFRESH-42" not in driver.page_source
    out = mxctl("mailbox", "show", "boss@g.test", "--json").stdout
    assert '"client-42"' in out and '"***"' in out, out
    shot("oauth")


if __name__ == "__main__":
    sys.exit(main())
