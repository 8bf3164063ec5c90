#!/usr/bin/env python3
"""Write the seed corpora of test/fuzz/corpus/<target>/.

Authoring-time only, like test/fixtures/webauthn/gen.py: the corpora are
committed, and neither make fuzz nor make test runs this script.  It needs
only Python's standard library: tokens are made here (the checksum is
BLAKE2b-128, which hashlib has), and the WebAuthn keys and assertions are
taken from the fixtures of sql/webauthn.sql, which gen.py signed.

    python3 test/fuzz/seeds.py        # from the repository root

Every seed is a small, valid input (valid as far as its parser goes), so
that the fuzzer starts from the accepting paths and mutates its way out.
"""
import base64
import hashlib
import os
import re
import shutil
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CORPUS = os.path.join(ROOT, "test", "fuzz", "corpus")
PREFIX = {"session": b"axs_", "refresh": b"axr_", "api_key": b"axk_"}
KIND = {"session": b"s", "refresh": b"r", "api_key": b"k"}


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def token(kind, tag):
    """A well-formed token: fixed id and secret derived from tag."""
    raw = hashlib.sha256(b"authctx fuzz seed " + tag).digest()
    raw += hashlib.sha256(raw).digest()
    tid, secret = bytearray(raw[:16]), raw[16:48]
    tid[6] = (tid[6] & 0x0F) | 0x40          # a version 4 uuid, as token_new makes
    tid[8] = (tid[8] & 0x3F) | 0x80
    tid = bytes(tid)
    check = hashlib.blake2b(PREFIX[kind] + tid + secret, digest_size=16).digest()[:4]
    return PREFIX[kind] + b64url(tid + secret + check), KIND[kind] + tid + secret


def fixtures():
    """name -> list of bytea values, from the FIXTURES block of sql/webauthn.sql."""
    text = open(os.path.join(ROOT, "sql", "webauthn.sql")).read()
    block = text[text.index("-- BEGIN FIXTURES"):text.index("-- END FIXTURES")]
    rows = {}
    for m in re.finditer(r"\(\s*'([a-z0-9_]+)'((?:,\s*'\\x[0-9a-f]*')+)\)", block):
        rows[m.group(1)] = [bytes.fromhex(h) for h in re.findall(r"'\\x([0-9a-f]*)'", m.group(2))]
    return rows


def field(b):
    """fuzz.h's FuzzField framing: 2-byte big-endian length, then the bytes."""
    return struct.pack(">H", len(b)) + b


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    fx = fixtures()
    keys = {n: v[0] for n, v in fx.items() if len(v) == 1}
    asserts = {n: v for n, v in fx.items() if len(v) == 4}
    rp = b"example.com"

    toks = {}
    for kind in ("session", "refresh", "api_key"):
        text, binary = token(kind, kind.encode())
        toks[kind] = text
        write("token_text", kind, text)
        write("token_binary", kind, binary)
    # one with '-' and '_' in it, the characters other alphabets lack
    for i in range(1000):
        text, binary = token("session", b"dash underscore %d" % i)
        if b"-" in text[4:] and b"__" in text[4:]:
            write("token_text", "session_dash_underscore", text)
            write("token_binary", "session_dash_underscore", binary)
            break

    write("base64url", "token_body", toks["session"][4:])
    write("base64url", "challenge", b64url(hashlib.sha256(b"authctx fuzz challenge").digest()))
    write("base64url", "one_byte", b64url(b"\xff"))
    write("base64url", "two_bytes", b64url(b"\xfb\xff"))

    for name in ("alice", "bob", "ed_reordered"):
        write("cose_key", name, keys[name])

    for name, key in (("ed_ok", "alice"), ("es_seven", "bob")):
        cred, ad, cd, sig = asserts[name]
        write("authdata", name, field(keys[key]) + field(ad) + field(cd) + field(sig) + rp)

    for name in ("ed_ok", "es_seven"):
        write("clientdata", name, asserts[name][2])

    s, k = toks["session"].decode(), toks["api_key"].decode()
    write("redact", "statement", ("SELECT auth_begin('%s');" % s).encode())
    write("redact", "parameters", ("parameters: $1 = '%s', $2 = 'acme'" % k).encode())
    write("redact", "truncated", ("invalid input syntax for type uuid: \"%s\"" % s[:24]).encode())
    write("redact", "no_token", b"duplicate key value violates unique constraint \"users_email_key\"")
    write("redact", "near_misses", b"axs_short ax_ axz_AAAAAAAAAAAAAAAAAAAA axk_AAAAAAAAAAAAAAA.")


if __name__ == "__main__":
    sys.exit(main())
