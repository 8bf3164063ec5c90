#!/usr/bin/python3
"""test/notes/browser.py: the notes app's pages in headless Chromium.

    browser.py PORT OUTDIR

Drives Debian's chromium through chromium-driver and python3-selenium
against the notes app at http://localhost:PORT (rp id "localhost"), with
Chromium's virtual authenticator (CTAP2, internal transport, resident keys,
user verification) standing in for a platform passkey, so that authctx's
WebAuthn verification meets an independent, real implementation:

  1. password login on the login page, the session cookie's flags, a note
     added through the notes page, a screenshot of that page;
  2. passkey registration (ES256) from the notes page and passkey login
     from the login page;
  3. the same with an Ed25519 passkey, on a fresh authenticator, when the
     virtual authenticator offers Ed25519;
  4. alice's passkey naming globex is refused by the server; on the
     tenants' own hosts (globex.localhost) her password does not open
     globex, and bob's globex page shows none of acme's notes;
  5. a registration whose attestation is not "none" or packed
     self-attestation (the authenticator's batch certificate) is refused.

Prints one line per check for the TAP wrapper (test/t/076_notes_browser.pl):
"ok - NAME", "not ok - NAME: DETAIL", "skip - NAME: REASON", or once
"skip_all - REASON" when the browser cannot start.  Exits 0 unless the
script itself broke.
"""

import os
import shutil
import sys
import tempfile
import time
import traceback

port = int(sys.argv[1])
outdir = sys.argv[2]
BASE = "http://localhost:%d" % port
PASSWORD = "correct horse battery staple"


def out(line):
    print(line, flush=True)


def check(name, cond, detail=""):
    out(("ok - %s" % name) if cond else ("not ok - %s: %s" % (name, detail)))
    return cond


try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:
    out("skip_all - python3-selenium cannot be imported: %s" % e)
    sys.exit(0)

profile = tempfile.mkdtemp(prefix="notes-chromium-")
opts = Options()
opts.binary_location = "/usr/bin/chromium"
for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--window-size=1000,900",
            "--user-data-dir=" + profile):
    opts.add_argument(arg)
try:
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver",
                                              log_path=os.path.join(outdir, "chromedriver.log")),
                              options=opts)
except (WebDriverException, OSError) as e:
    out("skip_all - the browser cannot start: %s" % str(e).strip().splitlines()[0])
    shutil.rmtree(profile, ignore_errors=True)
    sys.exit(0)

D = driver
wait = WebDriverWait(D, 20)


def el(id_):
    return D.find_element(By.ID, id_)


def text_of(id_):
    try:
        return el(id_).text
    except WebDriverException:
        return ""


def wait_for(cond, what):
    try:
        wait.until(lambda d: cond())
        return True
    except TimeoutException:
        out("# timed out waiting for %s (at %s; status %r)" % (what, D.current_url, status()))
        return False


def status():
    return text_of("status")


def on_notes_page(base=BASE):
    return D.current_url == base + "/notes.html" and text_of("role") not in ("", "…")


def password_login(email, base=BASE, tenant=""):
    D.get(base + "/")
    el("email").send_keys(email)
    el("password").send_keys(PASSWORD)
    if tenant:
        el("tenant").send_keys(tenant)
    el("login").click()


def sign_out():
    el("logout").click()
    return wait_for(lambda: D.current_url == BASE + "/", "the login page after sign-out")


def register_passkey(alg):
    D.find_element(By.CSS_SELECTOR, "#passkey-alg option[value=%s]" % alg).click()
    el("passkey-register").click()
    wait_for(lambda: status().startswith("Passkey"), "the registration's answer")
    return status()


def passkey_login(base=BASE):
    D.get(base + "/")
    el("passkey-login").click()


def fetch_status(path):
    """The HTTP status of a same-origin fetch from the page (cookies included)."""
    return D.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => done(r.status), e => done(-1));",
        path)


def authenticator():
    D.add_virtual_authenticator(VirtualAuthenticatorOptions(
        protocol="ctap2", transport="internal", has_resident_key=True,
        has_user_verification=True, is_user_verified=True))


try:
    out("# %s %s" % (D.capabilities.get("browserName"), D.capabilities.get("browserVersion")))

    # ---------------------------------------------------------------- 1
    password_login("alice@acme.test")
    check("password login opens the notes page",
          wait_for(on_notes_page, "the notes page"), "status %r" % status())
    check("as alice, acme's owner, by session",
          (text_of("who"), text_of("role"), text_of("method")) == ("alice@acme.test", "owner", "session"),
          "%r" % ((text_of("who"), text_of("role"), text_of("method")),))
    cookie = D.get_cookie("notes_session") or {}
    check("the session cookie is HttpOnly, Secure, SameSite=Lax",
          (cookie.get("httpOnly"), cookie.get("secure"), cookie.get("sameSite")) == (True, True, "Lax"),
          "%r" % {k: v for k, v in cookie.items() if k != "value"})
    check("and out of the page's scripts' reach",
          "notes_session" not in D.execute_script("return document.cookie"))
    el("note-title").send_keys("acme: written in Chromium")
    el("note-body").send_keys("through the notes page")
    el("add-note").click()
    check("a note added on the page appears in the list",
          wait_for(lambda: "acme: written in Chromium" in text_of("notes"), "the new note"),
          text_of("notes"))
    shot = os.path.join(outdir, "notes_page.png")
    D.save_screenshot(shot)
    with open(shot, "rb") as f:
        check("a screenshot of the notes page is saved (%s)" % shot, f.read(8) == b"\x89PNG\r\n\x1a\n")

    # ---------------------------------------------------------------- 2
    authenticator()
    msg = register_passkey("es256")
    check("an ES256 passkey is registered from the notes page", msg.startswith("Passkey added"), msg)
    creds = D.get_credentials()
    check("the authenticator holds one resident credential", len(creds) == 1 and creds[0].is_resident_credential,
          "%d credentials" % len(creds))
    check("sign-out returns to the login page", sign_out())
    check("and the session is gone", fetch_status("/notes") == 401)
    passkey_login()
    check("passkey login (ES256) opens the notes page", wait_for(on_notes_page, "the notes page"),
          "status %r" % status())
    check("with acme's notes", "acme: written in Chromium" in text_of("notes"), text_of("notes"))
    sign_out()

    # ---------------------------------------------------------------- 3
    D.remove_virtual_authenticator()
    authenticator()
    password_login("alice@acme.test")
    wait_for(on_notes_page, "the notes page")
    msg = register_passkey("eddsa")
    if "NotSupportedError" in msg or "not supported" in msg.lower():
        out("skip - Ed25519 passkeys: the virtual authenticator does not offer Ed25519 (%s)" % msg)
        register_passkey("es256")           # the next steps need a passkey here
    else:
        check("an Ed25519 passkey is registered from the notes page", msg.startswith("Passkey added"), msg)
        sign_out()
        passkey_login()
        check("passkey login (Ed25519) opens the notes page", wait_for(on_notes_page, "the notes page"),
              "status %r" % status())
    sign_out()

    # ---------------------------------------------------------------- 4
    # a passkey proves who, not where: alice's, naming globex, is refused
    # by the database (login_webauthn checks the membership)
    D.get(BASE + "/")
    el("tenant").send_keys("globex")
    el("passkey-login").click()
    check("alice's passkey does not open globex (the server refuses it: 401)",
          wait_for(lambda: status() == "Passkey sign-in failed: login failed", "the refusal"),
          "status %r" % status())
    D.execute_script("sessionStorage.clear()")
    # the tenants' own hosts; cookies are per host
    globex = "http://globex.localhost:%d" % port
    password_login("alice@acme.test", base=globex)
    check("on globex's host, alice's password does not sign her in",
          wait_for(lambda: status() == "Wrong email or password.", "the refusal"), "status %r" % status())
    password_login("bob@globex.test", base=globex)
    check("bob signs in on globex's host", wait_for(lambda: on_notes_page(globex), "globex's notes page"),
          "status %r" % status())
    el("note-title").send_keys("globex: bob's")
    el("add-note").click()
    wait_for(lambda: "globex: bob's" in text_of("notes"), "bob's note")
    check("and sees globex's notes only", "acme:" not in text_of("notes") and "globex: bob's" in text_of("notes"),
          text_of("notes"))
    check("the acme host's cookie did not follow him", D.get_cookie("notes_session") is not None
          and fetch_status("/notes") == 200)

    # ---------------------------------------------------------------- 5
    # the authenticator's batch attestation (packed with an x5c chain) is
    # not self-attestation: register_webauthn refuses it
    password_login("alice@acme.test")
    wait_for(on_notes_page, "the notes page")
    r = D.execute_async_script("""
        const done = arguments[arguments.length - 1];
        (async () => {
          const h = {'Content-Type': 'application/json'};
          const c = await (await fetch('/webauthn/challenge', {method: 'POST', headers: h,
                                        body: JSON.stringify({purpose: 'register'})})).json();
          const b = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), ch => ch.charCodeAt(0));
          const e = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
          const cred = await navigator.credentials.create({publicKey: {
            challenge: b(c.challenge), rp: {id: c.rp_id, name: 'Notes'},
            user: {id: b(c.user.id), name: c.user.name, displayName: c.user.name},
            pubKeyCredParams: [{type: 'public-key', alg: -7}],
            authenticatorSelection: {residentKey: 'required', userVerification: 'required'},
            attestation: 'direct'}});
          const fmt = new TextDecoder('latin1').decode(new Uint8Array(cred.response.attestationObject).slice(0, 12));
          const res = await fetch('/webauthn/register', {method: 'POST', headers: h, body: JSON.stringify({
            attestation_object: e(cred.response.attestationObject),
            client_data_json: e(cred.response.clientDataJSON)})});
          done([res.status, await res.text(), fmt]);
        })().catch(err => done([-1, String(err), '']));
    """)
    check("a registration with the authenticator's batch attestation (packed, x5c) is refused (400)",
          r[0] == 400 and "22023" in r[1] and "packed" in r[2], "%r" % (r,))
    out("# done")
except Exception:
    out("not ok - the browser script raised no exception: %s"
        % traceback.format_exc().replace("\n", " | "))
    try:
        D.save_screenshot(os.path.join(outdir, "failure.png"))
    except WebDriverException:
        pass
finally:
    D.quit()
    shutil.rmtree(profile, ignore_errors=True)
