#!/usr/bin/python3
"""examples/notes-app/walkthrough.py: the HTTP tour that `make demo` prints.

    walkthrough.py http://127.0.0.1:PORT

Talks to a running notes app seeded with seed.sql and prints every request
and response (tokens shortened), step by step: two tenants' users log in,
write and read notes and see only their own; a forged tenant, another
tenant's note, a viewer's write are refused; refresh rotation and reuse;
logout; two-factor: enrolment, a code, a step-up that a policy asks for.  Exits non-zero if any answer is not the expected one.
"""

import base64
import hashlib
import hmac
import http.client
import json
import re
import struct
import sys
import time
import urllib.parse

base = urllib.parse.urlsplit(sys.argv[1])
BOLD, DIM, OFF = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")
PASSWORD = "correct horse battery staple"
unexpected = 0


def short(text):
    """Tokens shortened to their prefix and first characters."""
    text = re.sub(r"\b(ax[srko]_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]+", r"\1…", text)
    # a TOTP secret and recovery codes are credentials too
    text = re.sub(r"(secret=[A-Z2-7]{4})[A-Z2-7]+", r"\1…", text)
    return re.sub(r'"recovery_codes": \[[^]]*\]', '"recovery_codes": [… 10 codes, shown once …]', text)


def totp(uri, step):
    """RFC 6238: the 6-digit code of a 30-second step (what an authenticator app shows)."""
    secret = re.search(r"[?&]secret=([A-Z2-7]+)", uri).group(1)
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


def step(title):
    print("\n%s== %s%s" % (BOLD, title, OFF))


def call(method, path, body=None, cookie=None, headers=None, expect=None):
    """One request, printed with its response; returns (status, json, cookie)."""
    global unexpected
    h = dict(headers or {})
    if body is not None:
        h["Content-Type"] = "application/json"
    if cookie:
        h["Cookie"] = "notes_session=" + cookie
    data = None if body is None else json.dumps(body)
    print("%s→ %s %s%s" % (BOLD, method, path, OFF))
    for k, v in h.items():
        print("  %s: %s" % (k, short(v)))
    if data:
        print("  " + short(data))
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
    conn.request(method, path, body=data, headers=h)
    res = conn.getresponse()
    raw = res.read().decode()
    conn.close()
    new_cookie = None
    print("%s← %d %s%s" % (BOLD, res.status, res.reason, OFF))
    for k, v in res.getheaders():
        if k.lower() == "set-cookie":
            print("  Set-Cookie: " + short(v))
            m = re.match(r"notes_session=([^;]*)", v)
            new_cookie = m.group(1) if m else None
    payload = json.loads(raw) if raw else None
    if payload is not None:
        if isinstance(payload, dict) and "notes" in payload:
            shown = dict(payload, notes=[{k: n[k] for k in ("id", "title")}
                                         for n in payload["notes"]])
        else:
            shown = payload
        print("  " + short(json.dumps(shown)))
    if expect is not None and res.status != expect:
        print("  (expected %d)" % expect)
        unexpected += 1
    return res.status, payload, new_cookie


def login(email, **kw):
    status, body, cookie = call("POST", "/login", {"email": email, "password": PASSWORD},
                                expect=200, **kw)
    return cookie, (body or {}).get("refresh_token")


step("1. Alice (acme) and Bob (globex) sign in; the session token comes back in an "
     "HttpOnly cookie, the refresh token in the body")
alice, alice_refresh = login("alice@acme.test")
bob, _ = login("bob@globex.test")
call("POST", "/login", {"email": "alice@acme.test", "password": "wrong"}, expect=401)

step("2. Each writes a note: every request is one transaction that starts with "
     "auth_begin($1), and the database fills in the tenant")
call("POST", "/notes", {"title": "acme: Q3 roadmap", "body": "ship passkeys"},
     cookie=alice, expect=201)
_, note, _ = call("POST", "/notes", {"title": "globex: merger plan", "body": "confidential"},
                  cookie=bob, expect=201)

step("3. The same query, two answers: row-level security keeps each tenant's notes apart")
call("GET", "/notes", cookie=alice, expect=200)
call("GET", "/notes", cookie=bob, expect=200)

step("4. Alice tries to reach globex: a forged tenant header, Bob's note by id")
call("GET", "/notes", cookie=alice, headers={"X-Tenant": "globex"}, expect=403)
call("GET", "/notes/%d" % (note or {}).get("id", 0), cookie=alice, expect=404)
call("DELETE", "/notes/%d" % (note or {}).get("id", 0), cookie=alice, expect=404)

step("5. Carol is a viewer in acme: she reads, she cannot write (the database refuses)")
carol, _ = login("carol@both.test", headers={"X-Tenant": "acme"})
call("GET", "/notes", cookie=carol, headers={"X-Tenant": "acme"}, expect=200)
call("POST", "/notes", {"title": "acme: carol was here"}, cookie=carol,
     headers={"X-Tenant": "acme"}, expect=403)

step("6. Refresh rotates the pair; replaying the spent refresh token revokes the whole family")
_, rotated, alice2 = call("POST", "/refresh", {"refresh_token": alice_refresh}, expect=200)
call("GET", "/notes", cookie=alice2, expect=200)
call("POST", "/refresh", {"refresh_token": alice_refresh}, expect=401)
call("GET", "/notes", cookie=alice2, expect=401)

step("7. Bob signs out: his token is refused by the very next request")
call("POST", "/logout", cookie=bob, expect=204)
call("GET", "/notes", cookie=bob, expect=401)

step("8. Alice turns on two-factor; deleting a note asks for it (a restrictive policy "
     "on 'otp' = ANY (authctx.amr()))")
alice, _ = login("alice@acme.test")
_, mine, _ = call("POST", "/notes", {"title": "acme: draft"}, cookie=alice, expect=201)
mine = (mine or {}).get("id", 0)
call("DELETE", "/notes/%d" % mine, cookie=alice, expect=403)
_, enrolled, _ = call("POST", "/totp/enroll", cookie=alice, expect=200)
uri = (enrolled or {}).get("uri", "otpauth://totp/x?secret=AAAA")
now = int(time.time()) // 30
call("POST", "/totp/confirm", {"code": totp(uri, now)}, cookie=alice, expect=200)
call("POST", "/totp/verify", {"code": "000000" if totp(uri, now + 1) != "000000" else "111111"},
     cookie=alice, expect=401)
call("POST", "/totp/verify", {"code": totp(uri, now + 1)}, cookie=alice, expect=200)
call("DELETE", "/notes/%d" % mine, cookie=alice, expect=204)

print()
if unexpected:
    print("%d answers were not the expected ones" % unexpected)
    sys.exit(1)
print("%sEvery answer was the expected one.%s" % (DIM, OFF))
