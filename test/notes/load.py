#!/usr/bin/python3
"""test/notes/load.py: a bounded, concurrent, mixed-tenant load on the notes app.

    load.py BASE_URL REQUESTS_PER_CLIENT < clients.json

clients.json is a list of {"name", "email", "password", "tenants": [slug,
...], "tenant_ids": {slug: uuid}}.  Each client runs in its own thread on
one keep-alive HTTP connection: it logs in, then for REQUESTS_PER_CLIENT
rounds picks one of its tenants (X-Tenant) and either writes a note whose
title carries its tenant and name, lists the notes, or reads one of its own
notes back by id.  Every answer is checked: a listed or read note must
belong to the tenant the request named (its tenant_id, and its title's
tenant prefix).  The server connections behind PgBouncer are shared by all
clients, so a context that crossed from one transaction to the next would
show up here as a foreign note.

Prints one JSON object: {"requests", "by_status", "notes_seen",
"foreign": [...], "errors": [...]} and exits 0 (the caller judges).
"""

import http.client
import json
import random
import sys
import threading
import urllib.parse

base = urllib.parse.urlsplit(sys.argv[1])
rounds = int(sys.argv[2])
clients = json.load(sys.stdin)
lock = threading.Lock()
result = {"requests": 0, "by_status": {}, "notes_seen": 0, "foreign": [], "errors": []}


def record(status):
    with lock:
        result["requests"] += 1
        result["by_status"][str(status)] = result["by_status"].get(str(status), 0) + 1


def problem(kind, text):
    with lock:
        if len(result[kind]) < 20:
            result[kind].append(text)


def client(spec, seed):
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)

    def call(method, path, body=None, tenant=None, cookie=None):
        headers = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if tenant:
            headers["X-Tenant"] = tenant
        if cookie:
            headers["Cookie"] = "notes_session=" + cookie
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers=headers)
        res = conn.getresponse()
        data = res.read()
        record(res.status)
        return res, (json.loads(data) if data else None)

    res, data = call("POST", "/login", {"email": spec["email"], "password": spec["password"]})
    if res.status != 200:
        problem("errors", "%s: login %d" % (spec["name"], res.status))
        return
    cookie = None
    for k, v in res.getheaders():
        if k.lower() == "set-cookie" and v.startswith("notes_session="):
            cookie = v.split(";", 1)[0].split("=", 1)[1]
    mine = {t: [] for t in spec["tenants"]}

    def check(note, tenant, where):
        with lock:
            result["notes_seen"] += 1
        if note["tenant_id"] != spec["tenant_ids"][tenant] or \
                not note["title"].startswith(tenant + ":"):
            problem("foreign", "%s asked %s, %s got note %s of tenant %s titled %r"
                    % (spec["name"], tenant, where, note["id"], note["tenant_id"], note["title"]))

    for i in range(rounds):
        tenant = rnd.choice(spec["tenants"])
        what = rnd.random()
        try:
            if what < 0.3:
                res, data = call("POST", "/notes",
                                 {"title": "%s:%s:%d" % (tenant, spec["name"], i),
                                  "body": "load"}, tenant, cookie)
                if res.status == 201:
                    check(data, tenant, "POST")
                    mine[tenant].append(data["id"])
                elif res.status != 403 or not spec.get("viewer_in") == tenant:
                    problem("errors", "%s POST in %s: %d %s" % (spec["name"], tenant, res.status, data))
            elif what < 0.8 or not mine[tenant]:
                res, data = call("GET", "/notes", None, tenant, cookie)
                if res.status != 200:
                    problem("errors", "%s GET /notes in %s: %d" % (spec["name"], tenant, res.status))
                    continue
                for note in data["notes"]:
                    check(note, tenant, "GET /notes")
            else:
                note_id = rnd.choice(mine[tenant])
                res, data = call("GET", "/notes/%d" % note_id, None, tenant, cookie)
                if res.status != 200:
                    problem("errors", "%s GET /notes/%d in %s: %d" % (spec["name"], note_id, tenant, res.status))
                    continue
                check(data, tenant, "GET /notes/id")
        except (OSError, http.client.HTTPException, ValueError) as e:
            problem("errors", "%s: %s" % (spec["name"], type(e).__name__))
            conn.close()
            conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
    conn.close()


threads = [threading.Thread(target=client, args=(c, n)) for n, c in enumerate(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(result))
