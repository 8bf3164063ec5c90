#!/usr/bin/python3
"""examples/notes-app/app.py: a small multi-tenant notes service on authctx.

It uses authctx as a production application would, with nothing but
Debian's python3-psycopg and the standard library's HTTP server:

  - It connects as notes_app (a member of authctx_app, owner of nothing)
    through PgBouncer in transaction mode, with prepare_threshold=None so
    that psycopg never leaves a named prepared statement on a pooled server
    connection.
  - Every request that touches data runs in ONE transaction whose first
    statement is `SELECT * FROM public.auth_begin($1::text[, $2::text])`,
    the token and the tenant sent as bind parameters (psycopg turns each %s
    below into $n of the extended query protocol; no SQL is ever built from
    request text).  The context lives until COMMIT or ROLLBACK, so the next
    client on the same server connection inherits nothing.
  - Which rows a request sees is decided by PostgreSQL, not here: the notes
    table is under authctx.enable_tenant_isolation (schema.sql), and the
    SQL below never mentions a tenant.
  - The tenant comes from the Host subdomain (<tenant>.<--tenant-domain>)
    or from an X-Tenant header (a slug or a uuid); auth_begin checks that
    the token's user is a member (42501 otherwise, a 403 here).
  - The session token travels in an HttpOnly; Secure; SameSite=Lax cookie
    (or an Authorization: Bearer header, for API clients); the refresh
    token is returned in the body and goes back only to POST /refresh.
  - Passkeys: the challenge, the registration (authctx.register_webauthn
    parses and checks the attestation object) and the assertion
    (authctx.login_webauthn) are verified in the database; the relying
    party id and the expected origin come from this server's configuration,
    never from the request.  Registering a credential is identity
    management (authctx_manager), so that one endpoint uses a second pool
    connected as notes_registrar (--registrar-dsn), and registers only for
    the user whose token auth_begin just validated in the same transaction.

Errors: 401 for SQLSTATE 28000/28P01, 403 for 42501, 400 for class 22 (and
for 23 other than 23505, which is 409), 409 for 55000, 404 when a note is not visible, 503
when the database cannot be reached, 500 otherwise; always a JSON body
{"error": ...}, never a stack trace.  Log lines name the method, path,
status and time, never a header or a body.

Usage:
  app.py --dsn "host=127.0.0.1 port=6432 dbname=notes user=notes_app" \\
         --registrar-dsn "host=127.0.0.1 port=6432 dbname=notes user=notes_registrar" \\
         --listen 127.0.0.1:8080 --rp-id localhost \\
         --origin http://localhost:8080 --tenant-domain localhost

Endpoints:
  GET  /                    the login page (password or passkey)
  GET  /notes.html          the tenant's notes page, with the account panel
  GET  /reset.html, /verify.html  where the links of the account flows land
  GET  /healthz             200 when the database answers
  POST /login               {email, password, tenant?} -> cookie, {refresh_token, ...}
  POST /refresh             {refresh_token} -> new cookie, {refresh_token, ...}
  POST /logout              revokes the session and its refresh family
  GET  /me                  the request's authctx context and the user's tenants
  GET  /notes               the tenant's notes
  POST /notes               {title, body?} -> 201
  GET|PATCH|DELETE /notes/<id>
  POST /webauthn/challenge  {purpose?: login|register} -> {challenge, rp_id, user?}
  POST /webauthn/register   {attestation_object, client_data_json, name?} (signed in)
  POST /webauthn/login      {credential_id, authenticator_data,
                             client_data_json, signature, tenant?} -> cookie
  GET  /account             the user's email, whether verified, whether TOTP is on
  POST /password/forgot     {email} -> 202 always; a reset link to the outbox
  POST /password/reset      {token, password} -> 200; every session revoked
  POST /email/verify/send   (signed in) -> 202; a verification link to the outbox
  POST /email/verify        {token} -> 200
  POST /totp/enroll         (signed in) -> {uri}: the otpauth:// URI, once
  POST /totp/confirm        {code} (signed in) -> {recovery_codes}, once
  POST /totp/verify         {code} (signed in) -> 200, the session stepped up

Account flows.  The links of "forgot password" and "verify email" carry a
one-time token (axo_) that goes only to the user's address: this example
has no mail server, so it appends each message to the file named by
--outbox (one JSON object a line; the tests read it), and says nothing of
it anywhere else.  Tokens, otpauth:// URIs and recovery codes are never
written to the log.  Issuing tokens and enrolling TOTP is identity
management (authctx_manager, the notes_registrar pool), always for the
user auth_begin just validated or, for "forgot password", for the user
notes.accounts maps the email to; spending them (verify_email,
reset_password, verify_totp) is authctx_app's, on the notes_app pool.
"""

import argparse
import base64
import contextlib
import datetime
import http
import http.cookies
import http.server
import json
import os
import queue
import re
import signal
import sys
import threading
import time
import uuid

import psycopg
from psycopg.rows import dict_row

COOKIE = "notes_session"
MAX_BODY = 64 * 1024
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
STATIC = {
    "/": ("login.html", "text/html; charset=utf-8"),
    "/notes.html": ("notes.html", "text/html; charset=utf-8"),
    "/reset.html": ("reset.html", "text/html; charset=utf-8"),
    "/verify.html": ("verify.html", "text/html; charset=utf-8"),
    "/static/notes.js": ("notes.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                               "style-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ApiError(Exception):
    """An answer other than success: HTTP status, message, maybe a SQLSTATE."""

    def __init__(self, status, message, sqlstate=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.sqlstate = sqlstate


def from_database(e):
    """Map a psycopg error to the HTTP answer; never echo tokens or traces."""
    state = getattr(e, "sqlstate", None) or ""
    if state in ("28000", "28P01"):
        return ApiError(401, "login failed" if state == "28P01" else "not authenticated", state)
    if state == "42501":
        return ApiError(403, "forbidden", state)
    if state.startswith("22") or (state.startswith("23") and state != "23505"):
        diag = getattr(e, "diag", None)
        primary = diag.message_primary if diag is not None else None
        return ApiError(400, "invalid request" + (": " + primary if primary else ""), state)
    if state == "23505":
        return ApiError(409, "already exists", state)
    if state == "55000":
        # e.g. verify_totp for a user without a factor
        diag = getattr(e, "diag", None)
        primary = diag.message_primary if diag is not None else None
        return ApiError(409, "not possible now" + (": " + primary if primary else ""), state)
    if isinstance(e, psycopg.OperationalError) and not state:
        return ApiError(503, "database unavailable")
    return ApiError(500, "internal error", state or None)


class Pool:
    """A few connections to PgBouncer, reused; a broken one is dropped."""

    def __init__(self, dsn, size):
        self.dsn = dsn
        self.idle = queue.LifoQueue()
        self.slots = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def connection(self):
        if not self.slots.acquire(timeout=10):
            raise ApiError(503, "too busy")
        conn = None
        try:
            try:
                conn = self.idle.get_nowait()
            except queue.Empty:
                conn = psycopg.connect(self.dsn, autocommit=True,
                                       prepare_threshold=None,
                                       row_factory=dict_row, connect_timeout=5)
            yield conn
        finally:
            if conn is not None:
                if conn.broken or conn.closed or \
                        conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.close()
                else:
                    self.idle.put(conn)
            self.slots.release()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(value, what):
    """base64url (padding optional) to bytes, or a 400 naming the field."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", value) \
            or len(value) > 2 * MAX_BODY:
        raise ApiError(400, "invalid request: %s must be base64url" % what)
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise ApiError(400, "invalid request: %s must be base64url" % what)


def to_json(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(type(value).__name__)


# what start_session needs from an authctx.login_result
SESSION_COLUMNS = "session_token::text, refresh_token::text, session_id, tenant_id, expires_at"
NOTE_COLUMNS = "id, tenant_id, author_id, title, body, created_at, updated_at, " \
               "author_id = authctx.user_id() AS mine"


class Handler(http.server.BaseHTTPRequestHandler):
    """One HTTP request: route, run in a transaction, answer JSON."""

    server_version = "notes-app"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # ------------------------------------------------------------ plumbing

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def log_message(self, fmt, *args):
        # the request line and status only: no header, cookie or body
        if not self.server.quiet:
            sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    def send_error(self, code, message=None, explain=None):
        # the server's own errors (unsupported method, bad request line) as
        # JSON too, instead of its HTML page
        self.cookies_out = []
        self.close_connection = True
        try:
            reason = http.HTTPStatus(code).phrase.lower()
        except ValueError:
            reason = "error"
        self.answer(code, {"error": reason})

    def dispatch(self, method):
        self.started = time.monotonic()
        self.cookies_out = []
        path = self.path.split("?", 1)[0]
        try:
            self.body = self.read_body(method)
            self.tenant, self.tenant_from_host = self.request_tenant()
            if method == "GET" and path in STATIC:
                return self.static(*STATIC[path])
            if method in ("POST", "PATCH", "DELETE"):
                self.check_origin()
            for m, pattern, func in ROUTES:
                match = pattern.fullmatch(path)
                if match and m == method:
                    status, payload = func(self, *match.groups())
                    return self.answer(status, payload)
            if any(p.fullmatch(path) for _, p, _ in ROUTES) or path in STATIC:
                raise ApiError(405, "method not allowed")
            raise ApiError(404, "not found")
        except ApiError as e:
            payload = {"error": e.message}
            if e.sqlstate:
                payload["sqlstate"] = e.sqlstate
            self.answer(e.status, payload)
        except psycopg.Error as e:
            err = from_database(e)
            if err.status == 500:
                sys.stderr.write("database error %s (%s)\n" % (err.sqlstate, type(e).__name__))
            payload = {"error": err.message}
            if err.sqlstate:
                payload["sqlstate"] = err.sqlstate
            self.answer(err.status, payload)
        except Exception as e:  # a bug: say so in the log, not to the client
            sys.stderr.write("internal error: %s\n" % type(e).__name__)
            self.answer(500, {"error": "internal error"})

    def read_body(self, method):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(411, "a Content-Length is required")
        if not length:
            return None
        if not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, "request body too large")
        raw = self.rfile.read(int(length))
        if method not in ("POST", "PATCH"):
            return None
        ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if raw and ctype != "application/json":
            # a form post from another site cannot send application/json
            # without a CORS preflight, which this server never grants
            raise ApiError(415, "send application/json")
        if not raw:
            return None
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "invalid request: the body is not JSON")
        if not isinstance(body, dict):
            raise ApiError(400, "invalid request: the body must be a JSON object")
        return body

    def answer(self, status, payload):
        data = b"" if payload is None else json.dumps(payload, default=to_json).encode()
        self.send_response(status)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        for cookie in self.cookies_out:
            self.send_header("Set-Cookie", cookie)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def static(self, name, ctype):
        with open(os.path.join(self.server.static_dir, name), "rb") as f:
            data = f.read()
        self.send_response(200)
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # ------------------------------------------------------ request context

    def request_tenant(self):
        """The tenant this request names: Host subdomain or X-Tenant header."""
        host = (self.headers.get("Host") or "").strip().lower()
        hostname = re.sub(r":[0-9]+$", "", host)
        from_host = None
        domain = self.server.tenant_domain
        if domain and hostname.endswith("." + domain):
            from_host = hostname[:-len(domain) - 1]
            if not SLUG.match(from_host):
                raise ApiError(400, "invalid request: no such tenant name in the host")
        header = self.headers.get("X-Tenant")
        if header is not None:
            header = header.strip()
            if not header or len(header) > 100:
                raise ApiError(400, "invalid request: X-Tenant must be a tenant slug or id")
            if from_host is not None and header != from_host:
                raise ApiError(400, "invalid request: the host and X-Tenant name different tenants")
        return (from_host or header), from_host is not None

    def expected_origin(self):
        """The origin a browser on this server writes into clientDataJSON."""
        if self.tenant_from_host:
            return self.server.tenant_origin.replace("{tenant}", self.tenant)
        return self.server.origin

    def check_origin(self):
        """A browser's cross-site write is refused (non-browsers send no Origin)."""
        origin = self.headers.get("Origin")
        if origin is not None and origin != self.expected_origin():
            raise ApiError(403, "cross-origin request refused")

    def token(self):
        auth = self.headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie") or "")
        except http.cookies.CookieError:
            return None
        morsel = jar.get(COOKIE)
        return morsel.value if morsel is not None else None

    def field(self, name, required=True, kind=str, max_len=10000):
        value = (self.body or {}).get(name)
        if value is None:
            if required:
                raise ApiError(400, "invalid request: %s is required" % name)
            return None
        if not isinstance(value, kind) or (kind is str and len(value) > max_len):
            raise ApiError(400, "invalid request: %s has the wrong type or length" % name)
        return value

    # -------------------------------------------------------- transactions

    def transaction(self, work, pool=None):
        """Run work(cursor) in one transaction through the pool."""
        with (pool or self.server.pool).connection() as conn:
            with conn.transaction():
                with conn.cursor() as cur:
                    return work(cur)

    def authenticated(self, work, pool=None):
        """One transaction: auth_begin(token[, tenant]) first, then work."""
        token = self.token()
        if not token:
            raise ApiError(401, "not authenticated")
        tenant = self.tenant

        def run(cur):
            if tenant is None:
                cur.execute("SELECT * FROM public.auth_begin(%s::text)", (token,))
            else:
                cur.execute("SELECT * FROM public.auth_begin(%s::text, %s::text)",
                            (token, tenant))
            return work(cur, cur.fetchone())
        return self.transaction(run, pool)

    def start_session(self, row):
        """Set the session cookie from a login_result; the body for the client."""
        ttl = int((row["expires_at"] - datetime.datetime.now(datetime.timezone.utc))
                  .total_seconds())
        self.cookies_out.append("%s=%s; Path=/; Max-Age=%d; HttpOnly; Secure; SameSite=Lax"
                                % (COOKIE, row["session_token"], max(ttl, 0)))
        return {"refresh_token": row["refresh_token"], "session_id": row["session_id"],
                "tenant_id": row["tenant_id"], "expires_at": row["expires_at"]}

    def login_tenant(self):
        body_tenant = self.field("tenant", required=False, max_len=100)
        if body_tenant is not None and self.tenant is not None and body_tenant != self.tenant:
            raise ApiError(400, "invalid request: the request names two tenants")
        return self.tenant if self.tenant is not None else body_tenant

    # ----------------------------------------------------------- endpoints

    def healthz(self):
        self.transaction(lambda cur: cur.execute("SELECT 1"))
        return 200, {"ok": True}

    def login(self):
        email = self.field("email", max_len=320)
        password = self.field("password", max_len=4096)
        tenant = self.login_tenant()

        def run(cur):
            cur.execute("SELECT " + SESSION_COLUMNS + " FROM authctx.login(%s, %s, %s)",
                        (email, password, tenant))
            return cur.fetchone()
        return 200, self.start_session(self.transaction(run))

    def refresh(self):
        refresh_token = self.field("refresh_token", max_len=200)

        def run(cur):
            cur.execute("SELECT " + SESSION_COLUMNS + " FROM authctx.refresh(%s)",
                        (refresh_token,))
            return cur.fetchone()
        return 200, self.start_session(self.transaction(run))

    def logout(self):
        token = self.token()
        self.cookies_out.append("%s=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax" % COOKIE)
        if token:
            try:
                self.transaction(lambda cur: cur.execute("SELECT authctx.logout(%s)", (token,)))
            except psycopg.Error as e:
                # a token that is no longer (or never was) a session: the
                # client is logged out all the same (RFC 7009)
                if getattr(e, "sqlstate", None) not in ("28000", "22P02"):
                    raise
        return 204, None

    def me(self):
        def run(cur, ctx):
            # the user's tenants, for a switcher, from the context alone
            cur.execute("SELECT tenant_id, slug, name, role FROM authctx.my_tenants()")
            return ctx, cur.fetchall()
        ctx, tenants = self.authenticated(run)
        current = next((t for t in tenants if t["tenant_id"] == ctx["tenant_id"]), None)
        return 200, {"user_id": ctx["user_id"], "tenant_id": ctx["tenant_id"],
                     "tenant": current["slug"] if current else None,
                     "tenant_name": current["name"] if current else None,
                     "role": ctx["role"], "auth_method": ctx["auth_method"],
                     "expires_at": ctx["expires_at"], "tenants": tenants}

    def list_notes(self):
        def run(cur, ctx):
            cur.execute("SELECT " + NOTE_COLUMNS + " FROM notes.notes ORDER BY id")
            return {"tenant_id": ctx["tenant_id"], "role": ctx["role"],
                    "notes": cur.fetchall()}
        return 200, self.authenticated(run)

    def create_note(self):
        title = self.field("title", max_len=1000)
        body = self.field("body", required=False, max_len=20000) or ""

        def run(cur, ctx):
            cur.execute("INSERT INTO notes.notes (title, body) VALUES (%s, %s)"
                        " RETURNING " + NOTE_COLUMNS, (title, body))
            return cur.fetchone()
        return 201, self.authenticated(run)

    def one_row(self, sql, params):
        """Run one statement after auth_begin; its row, or 404 when RLS hides it."""
        def run(cur, ctx):
            cur.execute(sql, params)
            return cur.fetchone()
        row = self.authenticated(run)
        if row is None:
            raise ApiError(404, "not found")
        return row

    def get_note(self, note_id):
        return 200, self.one_row("SELECT " + NOTE_COLUMNS + " FROM notes.notes"
                                 " WHERE id = %s::bigint", (note_id,))

    def update_note(self, note_id):
        title = self.field("title", required=False, max_len=1000)
        body = self.field("body", required=False, max_len=20000)
        if title is None and body is None:
            raise ApiError(400, "invalid request: nothing to change")
        return 200, self.one_row("UPDATE notes.notes SET title = coalesce(%s, title),"
                                 " body = coalesce(%s, body) WHERE id = %s::bigint"
                                 " RETURNING " + NOTE_COLUMNS, (title, body, note_id))

    def delete_note(self, note_id):
        # schema.sql: deleting needs a second factor ('otp' or 'webauthn' in
        # authctx.amr()); without one the policy hides the row from DELETE,
        # so tell a visible note (403, step up) from an invisible one (404)
        def run(cur, ctx):
            cur.execute("DELETE FROM notes.notes WHERE id = %s::bigint RETURNING id", (note_id,))
            if cur.fetchone() is not None:
                return "deleted"
            cur.execute("SELECT 1 FROM notes.notes WHERE id = %s::bigint", (note_id,))
            return "step_up" if cur.fetchone() is not None else None
        outcome = self.authenticated(run)
        if outcome is None:
            raise ApiError(404, "not found")
        if outcome == "step_up":
            raise ApiError(403, "deleting a note needs a second factor: POST /totp/verify first")
        return 204, None

    def webauthn_challenge(self):
        def challenge(cur):
            cur.execute("SELECT authctx.webauthn_challenge() AS c")
            return cur.fetchone()["c"]
        answer = {"rp_id": self.server.rp_id, "timeout_ms": 300000}
        purpose = self.field("purpose", required=False, max_len=20) or "login"
        if purpose not in ("login", "register"):
            raise ApiError(400, "invalid request: purpose is login or register")
        if purpose == "register":
            # signed in: a registration; the user handle is the user's id
            def run(cur, ctx):
                return challenge(cur), ctx
            chal, ctx = self.authenticated(run)
            answer["user"] = {"id": b64url(ctx["user_id"].bytes),
                              "name": str(ctx["user_id"])}
        else:
            chal = self.transaction(challenge)
        answer["challenge"] = b64url(chal)
        return 200, answer

    def webauthn_register(self):
        attestation = unb64url(self.field("attestation_object", max_len=2 * MAX_BODY),
                               "attestation_object")
        client_data = unb64url(self.field("client_data_json", max_len=2 * MAX_BODY),
                               "client_data_json")
        name = self.field("name", required=False, max_len=100)
        origin = self.expected_origin()
        if self.server.registrar_pool is None:
            raise ApiError(503, "passkey registration is not configured")

        def run(cur, ctx):
            cur.execute("SELECT authctx.register_webauthn(authctx.user_id(), %s, %s, %s, %s, %s)"
                        " AS credential_id",
                        (attestation, client_data, self.server.rp_id, origin, name))
            return cur.fetchone()["credential_id"]
        # as notes_registrar, for the context's user only
        return 201, {"credential_id": b64url(self.authenticated(run, self.server.registrar_pool))}

    def webauthn_login(self):
        args = [unb64url(self.field(k, max_len=2 * MAX_BODY), k)
                for k in ("credential_id", "authenticator_data", "client_data_json",
                          "signature")]
        tenant = self.login_tenant()
        origin = self.expected_origin()

        def run(cur):
            cur.execute("SELECT " + SESSION_COLUMNS +
                        " FROM authctx.login_webauthn(%s, %s, %s, %s, %s, %s, %s)",
                        (*args, self.server.rp_id, origin, tenant))
            return cur.fetchone()
        return 200, self.start_session(self.transaction(run))

    # ------------------------------------------------------- account flows

    def registrar(self):
        if self.server.registrar_pool is None:
            raise ApiError(503, "account management is not configured")
        return self.server.registrar_pool

    def send_mail(self, to, purpose, path, token):
        """Deliver a link to the user's address: here, the --outbox file."""
        with self.server.outbox_lock:
            with open(self.server.outbox, "a", encoding="utf-8") as f:
                f.write(json.dumps({"to": to, "purpose": purpose,
                                    "link": "%s%s#%s" % (self.server.link_base, path, token)})
                        + "\n")

    def mail_configured(self):
        if not self.server.outbox:
            raise ApiError(503, "this server sends no mail (start it with --outbox)")

    def account(self):
        def run(cur, ctx):
            cur.execute("SELECT email, email_verified_at, totp_enabled"
                        " FROM authctx.user_info(authctx.user_id())")
            info = cur.fetchone()
            cur.execute("SELECT authctx.amr() AS amr")
            return dict(info, user_id=ctx["user_id"], amr=cur.fetchone()["amr"])
        return 200, self.authenticated(run, self.registrar())

    def password_forgot(self):
        email = self.field("email", max_len=320)
        self.mail_configured()

        def run(cur):
            # the application's own directory (notes.accounts), as
            # notes_registrar; no link for a disabled user; the link goes to
            # the address authctx has now (the token is bound to it); the
            # token is made by authctx_manager's create_one_time_token and
            # supersedes the user's older ones
            cur.execute("SELECT i.email,"
                        " (authctx.create_one_time_token(a.user_id, 'reset_password',"
                        " '30 minutes'))::text AS token"
                        " FROM notes.accounts a, authctx.user_info(a.user_id) i"
                        " WHERE lower(a.email) = lower(%s) AND NOT i.disabled", (email,))
            return cur.fetchone()
        try:
            row = self.transaction(run, self.registrar())
        except psycopg.Error as e:
            # an account row whose user authctx no longer has: no account
            if getattr(e, "sqlstate", None) != "42704":
                raise
            row = None
        if row is not None:
            self.send_mail(row["email"], "reset_password", "/reset.html", row["token"])
        # the same answer whether or not the address has an account
        return 202, {"sent": True}

    def password_reset(self):
        token = self.field("token", max_len=200)
        password = self.field("password", max_len=4096)

        def run(cur):
            cur.execute("SELECT authctx.reset_password(%s, %s) AS user_id", (token, password))
            return cur.fetchone()
        self.transaction(run)
        # every session of the user is revoked, this browser's too: log in again
        self.cookies_out.append("%s=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax" % COOKIE)
        return 200, {"reset": True}

    def email_verify_send(self):
        self.mail_configured()

        def run(cur, ctx):
            cur.execute("SELECT (authctx.user_info(authctx.user_id())).email,"
                        " (authctx.create_one_time_token(authctx.user_id(),"
                        " 'verify_email'))::text AS token")
            return cur.fetchone()
        row = self.authenticated(run, self.registrar())
        self.send_mail(row["email"], "verify_email", "/verify.html", row["token"])
        return 202, {"sent": True}

    def email_verify(self):
        token = self.field("token", max_len=200)

        def run(cur):
            cur.execute("SELECT authctx.verify_email(%s) AS user_id", (token,))
            return cur.fetchone()
        return 200, {"verified": True, "user_id": self.transaction(run)["user_id"]}

    def require_step_up_to_replace(self, cur):
        """Replacing an active factor needs the current one (or a passkey)."""
        cur.execute("SELECT (authctx.user_info(authctx.user_id())).totp_enabled AS enabled,"
                    " 'otp' = ANY (authctx.amr()) OR 'webauthn' = ANY (authctx.amr()) AS stepped_up")
        row = cur.fetchone()
        if row["enabled"] and not row["stepped_up"]:
            raise ApiError(403, "two-factor is on: verify a code first to replace it")

    def totp_enroll(self):
        def run(cur, ctx):
            self.require_step_up_to_replace(cur)
            cur.execute("SELECT authctx.enroll_totp(authctx.user_id()) AS uri")
            return cur.fetchone()["uri"]
        return 200, {"uri": self.authenticated(run, self.registrar())}

    def totp_confirm(self):
        code = self.field("code", max_len=20)

        def run(cur, ctx):
            self.require_step_up_to_replace(cur)
            cur.execute("SELECT authctx.confirm_totp(authctx.user_id(), %s) AS codes", (code,))
            return cur.fetchone()["codes"]
        return 200, {"recovery_codes": self.authenticated(run, self.registrar())}

    def totp_verify(self):
        code = self.field("code", max_len=40)

        def run(cur, ctx):
            cur.execute("SELECT authctx.verify_totp(%s) AS ok", (code,))
            return cur.fetchone()["ok"]
        # false: counted toward the lockout by authctx, in its own transaction
        if not self.authenticated(run):
            raise ApiError(401, "wrong code")
        return 200, {"verified": True}


ROUTES = [(m, re.compile(p), f) for m, p, f in [
    ("GET", r"/healthz", Handler.healthz),
    ("POST", r"/login", Handler.login),
    ("POST", r"/refresh", Handler.refresh),
    ("POST", r"/logout", Handler.logout),
    ("GET", r"/me", Handler.me),
    ("GET", r"/notes", Handler.list_notes),
    ("POST", r"/notes", Handler.create_note),
    ("GET", r"/notes/([^/]{1,40})", Handler.get_note),
    ("PATCH", r"/notes/([^/]{1,40})", Handler.update_note),
    ("DELETE", r"/notes/([^/]{1,40})", Handler.delete_note),
    ("POST", r"/webauthn/challenge", Handler.webauthn_challenge),
    ("POST", r"/webauthn/register", Handler.webauthn_register),
    ("POST", r"/webauthn/login", Handler.webauthn_login),
    ("GET", r"/account", Handler.account),
    ("POST", r"/password/forgot", Handler.password_forgot),
    ("POST", r"/password/reset", Handler.password_reset),
    ("POST", r"/email/verify/send", Handler.email_verify_send),
    ("POST", r"/email/verify", Handler.email_verify),
    ("POST", r"/totp/enroll", Handler.totp_enroll),
    ("POST", r"/totp/confirm", Handler.totp_confirm),
    ("POST", r"/totp/verify", Handler.totp_verify),
]]


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", required=True,
                    help="libpq connection string to PgBouncer (or PostgreSQL)")
    ap.add_argument("--registrar-dsn", default=None,
                    help="connection string for passkey registration, as a "
                         "member of authctx_manager (default: registration off)")
    ap.add_argument("--listen", default="127.0.0.1:8080", help="address:port")
    ap.add_argument("--rp-id", default="localhost", help="WebAuthn relying party id")
    ap.add_argument("--origin", default=None,
                    help="this server's origin as browsers see it "
                         "(default http://localhost:<port>)")
    ap.add_argument("--tenant-domain", default="localhost",
                    help="hosts <tenant>.<this> name the tenant ('' for none)")
    ap.add_argument("--tenant-origin", default=None,
                    help="origin of a tenant's host, with {tenant} "
                         "(default: --origin with {tenant}.<host>)")
    ap.add_argument("--link-base", default=None,
                    help="where the links of outgoing messages point "
                         "(default: --origin)")
    ap.add_argument("--outbox", default=None,
                    help="append outgoing messages (password reset and email "
                         "verification links) to this file, one JSON object a "
                         "line, instead of mailing them: for demos and tests "
                         "(default: the flows that send mail are off)")
    ap.add_argument("--pool-size", type=int, default=8)
    ap.add_argument("--quiet", action="store_true", help="no access log")
    args = ap.parse_args()

    host, _, port = args.listen.rpartition(":")
    server = Server((host or "127.0.0.1", int(port)), Handler)
    bound = server.server_address[1]
    server.origin = args.origin or "http://localhost:%d" % bound
    scheme, _, rest = server.origin.partition("://")
    server.tenant_origin = args.tenant_origin or "%s://{tenant}.%s" % (scheme, rest)
    server.tenant_domain = args.tenant_domain.strip(".").lower()
    server.rp_id = args.rp_id
    server.pool = Pool(args.dsn, args.pool_size)
    server.registrar_pool = Pool(args.registrar_dsn, 2) if args.registrar_dsn else None
    server.static_dir = os.path.join(here, "static")
    server.link_base = (args.link_base or server.origin).rstrip("/")
    server.outbox = args.outbox
    server.outbox_lock = threading.Lock()
    server.quiet = args.quiet

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("notes-app listening on http://%s:%d (origin %s)" % (host, bound, server.origin),
          flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
