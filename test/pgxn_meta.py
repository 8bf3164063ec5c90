#!/usr/bin/python3
"""test/pgxn_meta.py: validate a META.json against the PGXN Meta Spec 1.0.0.

    test/pgxn_meta.py META.json [--root DIR]

Checks every rule of https://pgxn.org/spec/ (version 1.0.0) that applies to
a META.json file, written out here because the machines that run the tests
have no network and Debian packages no PGXN validator:

  - the required keys (name, abstract, maintainer, license, provides,
    meta-spec, version) and the types of every known key;
  - no key outside the spec, except custom keys starting with x_ or X_;
  - names and extension names are Terms (at least two characters, no slash,
    backslash, control or space character); tags are at most 255
    characters without slash, backslash or control characters;
  - versions are semantic versions, prerequisites are version ranges
    ("0", a version, or comparisons joined by commas), phases and
    relationships are the spec's, licenses are the spec's names or a map
    of names to URLs, release_status is stable, testing or unstable,
    meta-spec.version is "1.0.0", URLs are absolute http(s) URLs.

With --root (the distribution's root directory) it also checks what makes
this META.json authctx's: the version equals default_version in
authctx.control and every provided extension's version equals it,
provides' file and docfile exist, and CHANGELOG.md has a section for the
version.

Prints one line per problem and exits 1, or prints "ok" and exits 0.
"""

import json
import os
import re
import sys

LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
    "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1",
    "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5",
    "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source",
    "restricted", "unrestricted", "unknown",
}
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONS = {"requires", "recommends", "suggests", "conflicts"}
RELEASE_STATUS = {"stable", "testing", "unstable"}
TOP_KEYS = {
    "name", "abstract", "maintainer", "license", "provides", "meta-spec",
    "version", "description", "generated_by", "no_index", "prereqs",
    "release_status", "resources", "tags",
}
REQUIRED = ["name", "abstract", "maintainer", "license", "provides",
            "meta-spec", "version"]

SEMVER = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-?[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

problems = []


def bad(path, msg):
    problems.append("%s: %s" % (path, msg))


def custom(key):
    return key.startswith("x_") or key.startswith("X_")


def is_str(v):
    return isinstance(v, str)


def check_string(path, v, nonempty=True):
    if not is_str(v):
        bad(path, "must be a string")
    elif nonempty and not v.strip():
        bad(path, "must not be empty")


def check_term(path, v):
    if not is_str(v):
        bad(path, "must be a string")
    elif len(v) < 2 or re.search(r"[/\\\s\x00-\x1f\x7f]", v):
        bad(path, "%r is not a Term (2+ characters, no slash, backslash, "
                  "control or space character)" % v)


def check_tag(path, v):
    if not is_str(v):
        bad(path, "must be a string")
    elif not v or len(v) > 255 or re.search(r"[/\\\x00-\x1f\x7f]", v):
        bad(path, "%r is not a Tag (1-255 characters, no slash, backslash "
                  "or control character)" % v)


def check_version(path, v):
    if not is_str(v) or not SEMVER.match(v):
        bad(path, "%r is not a semantic version" % (v,))


def check_range(path, v):
    if v == 0 or v == "0":
        return
    if not is_str(v):
        bad(path, "%r is not a version range" % (v,))
        return
    for part in v.split(","):
        m = re.match(r"^\s*(==|!=|>=|<=|>|<)?\s*(\S+)\s*$", part)
        if not m or not SEMVER.match(m.group(2)):
            bad(path, "%r is not a version range" % v)
            return
        if m.group(1) is None and "," in v:
            bad(path, "%r: each part of a list needs an operator" % v)
            return


def check_url(path, v):
    if not is_str(v) or not URL.match(v):
        bad(path, "%r is not an absolute http(s) URL" % (v,))


def check_map(path, v, known, required=()):
    """A map whose keys are all known (or custom); True when it is a map."""
    if not isinstance(v, dict):
        bad(path, "must be an object")
        return False
    for k in v:
        if k not in known and not custom(k):
            bad(path, "unknown key %r" % k)
    for k in required:
        if k not in v:
            bad(path, "required key %r missing" % k)
    return True


def check_string_list(path, v, each=check_string):
    if not isinstance(v, list) or not v:
        bad(path, "must be a non-empty array")
        return
    for i, x in enumerate(v):
        each("%s[%d]" % (path, i), x)


def validate(meta):
    if not isinstance(meta, dict):
        bad("META.json", "must be a JSON object")
        return
    for k in meta:
        if k not in TOP_KEYS and not custom(k):
            bad(k, "not a key of the PGXN Meta Spec (custom keys start with x_)")
    for k in REQUIRED:
        if k not in meta:
            bad(k, "required key missing")

    if "name" in meta:
        check_term("name", meta["name"])
    if "abstract" in meta:
        check_string("abstract", meta["abstract"])
    if "description" in meta:
        check_string("description", meta["description"])
    if "generated_by" in meta:
        check_string("generated_by", meta["generated_by"])
    if "version" in meta:
        check_version("version", meta["version"])

    m = meta.get("maintainer")
    if "maintainer" in meta:
        if isinstance(m, list):
            check_string_list("maintainer", m)
        else:
            check_string("maintainer", m)

    lic = meta.get("license")
    if "license" in meta:
        if is_str(lic):
            if lic not in LICENSES:
                bad("license", "%r is not a license name of the spec" % lic)
        elif isinstance(lic, list):
            check_string_list("license", lic,
                              lambda p, x: x in LICENSES or bad(p, "%r is not a license name of the spec" % (x,)))
        elif isinstance(lic, dict):
            if not lic:
                bad("license", "must not be empty")
            for k, u in lic.items():
                check_url("license.%s" % k, u)
        else:
            bad("license", "must be a string, an array or an object")

    ms = meta.get("meta-spec")
    if "meta-spec" in meta and check_map("meta-spec", ms, {"version", "url"}, ["version"]):
        if ms.get("version") != "1.0.0":
            bad("meta-spec.version", "must be \"1.0.0\"")
        if "url" in ms:
            check_url("meta-spec.url", ms["url"])

    prov = meta.get("provides")
    if "provides" in meta:
        if not isinstance(prov, dict) or not prov:
            bad("provides", "must be a non-empty object")
        else:
            for ext, spec in prov.items():
                p = "provides.%s" % ext
                check_term(p, ext)
                if check_map(p, spec, {"file", "version", "abstract", "docfile"},
                             ["file", "version"]):
                    if "file" in spec:
                        check_string(p + ".file", spec["file"])
                    if "version" in spec:
                        check_version(p + ".version", spec["version"])
                    if "abstract" in spec:
                        check_string(p + ".abstract", spec["abstract"])
                    if "docfile" in spec:
                        check_string(p + ".docfile", spec["docfile"])

    if "prereqs" in meta and check_map("prereqs", meta["prereqs"], PHASES):
        for phase, rels in meta["prereqs"].items():
            if custom(phase):
                continue
            p = "prereqs.%s" % phase
            if check_map(p, rels, RELATIONS):
                for rel, pkgs in rels.items():
                    if custom(rel):
                        continue
                    if not isinstance(pkgs, dict):
                        bad("%s.%s" % (p, rel), "must be an object")
                        continue
                    for pkg, rng in pkgs.items():
                        check_term("%s.%s (name)" % (p, rel), pkg)
                        check_range("%s.%s.%s" % (p, rel, pkg), rng)

    if "release_status" in meta and meta["release_status"] not in RELEASE_STATUS:
        bad("release_status", "must be one of %s" % ", ".join(sorted(RELEASE_STATUS)))

    res = meta.get("resources")
    if "resources" in meta and check_map("resources", res,
                                         {"homepage", "bugtracker", "repository"}):
        if "homepage" in res:
            check_url("resources.homepage", res["homepage"])
        bt = res.get("bugtracker")
        if "bugtracker" in res and check_map("resources.bugtracker", bt, {"web", "mailto"}):
            if "web" in bt:
                check_url("resources.bugtracker.web", bt["web"])
            if "mailto" in bt and (not is_str(bt["mailto"]) or not EMAIL.match(bt["mailto"])):
                bad("resources.bugtracker.mailto", "must be an email address")
        repo = res.get("repository")
        if "repository" in res and check_map("resources.repository", repo,
                                             {"url", "web", "type"}):
            if "url" in repo and not (is_str(repo["url"]) and re.match(r"^[a-z+]+://\S+$", repo["url"])):
                bad("resources.repository.url", "must be a URL")
            if "web" in repo:
                check_url("resources.repository.web", repo["web"])
            if "type" in repo and (not is_str(repo["type"]) or not re.match(r"^[a-z]+$", repo["type"])):
                bad("resources.repository.type", "must be a lower-case word (git, svn, ...)")

    if "tags" in meta:
        check_string_list("tags", meta["tags"], check_tag)

    ni = meta.get("no_index")
    if "no_index" in meta and check_map("no_index", ni, {"file", "directory"}):
        for k in ("file", "directory"):
            if k in ni:
                check_string_list("no_index.%s" % k, ni[k])


def check_distribution(meta, root):
    """The rules that tie this META.json to authctx's tree."""
    try:
        control = open(os.path.join(root, "authctx.control"), encoding="utf-8").read()
    except OSError as e:
        bad("authctx.control", str(e))
        return
    m = re.search(r"^default_version\s*=\s*'([^']+)'", control, re.M)
    if not m:
        bad("authctx.control", "no default_version")
        return
    version = m.group(1)
    if meta.get("version") != version:
        bad("version", "%r differs from authctx.control's default_version %r"
            % (meta.get("version"), version))
    for ext, spec in (meta.get("provides") or {}).items():
        if not isinstance(spec, dict):
            continue
        if spec.get("version") != version:
            bad("provides.%s.version" % ext, "%r differs from the control file's %r"
                % (spec.get("version"), version))
        for k in ("file", "docfile"):
            if is_str(spec.get(k)) and not os.path.isfile(os.path.join(root, spec[k])):
                bad("provides.%s.%s" % (ext, k), "%r does not exist" % spec[k])
    try:
        changelog = open(os.path.join(root, "CHANGELOG.md"), encoding="utf-8").read()
    except OSError as e:
        bad("CHANGELOG.md", str(e))
        return
    if not re.search(r"^## %s\b" % re.escape(version), changelog, re.M):
        bad("CHANGELOG.md", "no section '## %s'" % version)


def main(argv):
    args = argv[1:]
    root = None
    if "--root" in args:
        i = args.index("--root")
        root = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        with open(args[0], encoding="utf-8") as f:
            meta = json.load(f, object_pairs_hook=no_duplicates)
    except (OSError, ValueError) as e:
        print("%s: %s" % (args[0], e))
        return 1
    validate(meta)
    if root is not None and not problems:
        check_distribution(meta, root)
    for p in problems:
        print(p)
    if problems:
        return 1
    print("ok")
    return 0


def no_duplicates(pairs):
    """json.load hook: a key given twice is an error, not a silent override."""
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError("duplicate key %r" % k)
        d[k] = v
    return d


if __name__ == "__main__":
    sys.exit(main(sys.argv))
