#!/usr/bin/env python3
"""Differential test of the webhook JSON builder against Python's email package.

Every message under --corpus goes through mx-json-dump (our JSON document, the code a
format=json webhook delivery runs) and through email.message_from_bytes(policy=policy.default),
the reference. Per message nine fields are compared: subject, from, to, cc, text, html and the
attachments' names, types and sizes (each compared as the ordered list).

What the reference "shows" (the rules a mail client applies, as Python implements them):
- subject: str(msg['subject']) (RFC 2047 decoded).
- from/to/cc: the (display name, addr-spec) pairs of the first such field, groups flattened.
- text/html: msg.get_body(('plain',)) / get_body(('html',)).get_content(); get_body skips
  parts with Content-Disposition: attachment and follows multipart/related's start part.
- attachments: every leaf part in document order (message/rfc822 counts as one leaf, not
  descended) except the two parts chosen as text and html. Name: the filename parameter of
  Content-Disposition, else the name parameter of Content-Type, as the header registry decodes
  them (RFC 2231 and encoded-words); type: get_content_type(); size: the transfer-decoded
  bytes (message/rfc822: the inner message as the generator writes it back).

Normalisation (applied to both sides, nothing else):
- line ends: CRLF and lone CR become LF in text/html;
- text/html: whitespace at both ends removed;
- subject and display names: runs of whitespace become one space, ends trimmed (unfolding
  differs in how many blanks a fold leaves);
- addr-specs compared case-insensitively on the domain only;
- attachment sizes: line ends counted as LF for text/* and message/* parts (CRLF vs LF is
  the transport's choice, not content); for message/* parts, whose reference bytes come
  from Python's generator (no refolding), trailing line ends are not counted;
- raw 8-bit header bytes Python keeps undecoded (surrogate escapes) are read as UTF-8 when
  they are valid UTF-8 (RFC 6532), as every reader of such headers does;
- a run of U+FFFD in a reference string (bytes Python could not decode and replaced) matches
  any non-empty run of characters in ours: where Python gives up, any reading is accepted;
- a field for which Python raises (e.g. LookupError for a charset it does not know) has no
  reference value: it is not compared and is listed as "not compared".

The reference is the distribution's Python 3 (Debian 12: 3.11). A newer Python may read a few
odd messages differently; the run then names them (a new disagreement or a stale entry).

Regenerating the allow-list after a change: --write-allowlist FILE writes every current
disagreement (known ones keep their category; new ones get TODO, to be explained by hand).

The run fails (exit 1) when a disagreement is not in the allow-list, when an allow-list entry
no longer matches anything (stale), when an allow-list category is not described in
docs/targets.md, or when the share of disagreeing fields exceeds --max-rate.
"""
import argparse
import base64
import email
import email.policy
import email.utils
import json
import os
import re
import subprocess
import sys

FIELDS = ["subject", "from", "to", "cc", "text", "html",
          "attachment_names", "attachment_types", "attachment_sizes"]


def ws(s):
    return re.sub(r"\s+", " ", s or "").strip()


def nl(s):
    if s is None:
        return None
    return s.replace("\r\n", "\n").replace("\r", "\n").strip()


def unescape(s):
    """Undecoded raw bytes Python keeps as surrogate escapes: UTF-8 (RFC 6532) when valid."""
    if not isinstance(s, str) or not any("\udc80" <= c <= "\udcff" for c in s):
        return s
    raw = s.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


def norm_addr(name, addr):
    name, addr = unescape(name), unescape(addr or "")
    if "@" in addr:
        local, _, dom = addr.rpartition("@")
        addr = local + "@" + dom.lower()
    return [ws(name), addr]


def lf_size(data, ctype):
    if ctype.startswith("message/"):
        return len(data.replace(b"\r\n", b"\n").rstrip(b"\n"))
    if ctype.startswith("text/"):
        return len(data.replace(b"\r\n", b"\n"))
    return len(data)


# ---- reference ---------------------------------------------------------------------------

def ref_addresses(msg, name):
    try:
        h = msg[name]
        if h is None:
            return []
        out = []
        for a in getattr(h, "addresses", ()):
            out.append(norm_addr(a.display_name, a.addr_spec if a.username or a.domain else ""))
        return out
    except Exception as e:  # the reference gave up on this field
        return "<reference error: %s>" % type(e).__name__


def ref_filename(part):
    for hname, pname in (("content-disposition", "filename"), ("content-type", "name")):
        try:
            h = part[hname]
        except Exception:
            h = None
        if h is None:
            continue
        params = getattr(h, "params", None) or {}
        if pname in params:
            return ws(str(params[pname]))
    return ""


def leaves(part):
    if part.get_content_maintype() == "multipart":
        # A multipart Python could not split (no boundary line found) is a container without
        # parts, not an attachment: clients list nothing for it.
        if part.is_multipart():
            for sub in part.iter_parts():
                yield from leaves(sub)
    else:
        yield part


def part_size(part):
    ctype = part.get_content_type()
    if part.is_multipart():  # message/rfc822, message/delivery-status: the body as written
        gen = email.policy.compat32.clone(linesep="\n", max_line_length=0)
        data = b"".join(sub.as_bytes(policy=gen) for sub in part.get_payload())
    else:
        data = part.get_payload(decode=True) or b""
    return lf_size(data, ctype)


def reference(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    r = {}
    try:
        r["subject"] = ws(str(msg["subject"] or ""))
    except Exception as e:
        r["subject"] = "<reference error: %s>" % type(e).__name__
    for f in ("from", "to", "cc"):
        r[f] = ref_addresses(msg, f)
    chosen = []
    for key, pref in (("text", "plain"), ("html", "html")):
        body = msg.get_body(preferencelist=(pref,))
        if body is None:
            r[key] = None
            continue
        chosen.append(body)
        try:
            r[key] = nl(body.get_content())
        except Exception as e:
            r[key] = "<reference error: %s>" % type(e).__name__
    atts = [p for p in leaves(msg) if not any(p is c for c in chosen)]
    r["attachment_names"] = [ref_filename(p) for p in atts]
    r["attachment_types"] = [p.get_content_type() for p in atts]
    r["attachment_sizes"] = [part_size(p) for p in atts]
    return r


# ---- ours ----------------------------------------------------------------------------------

def ours(doc):
    r = {"subject": ws(doc.get("subject", ""))}
    for f in ("from", "to", "cc"):
        if f in doc:
            r[f] = [norm_addr(a.get("name", ""), a.get("address", "")) for a in doc[f]]
            continue
        # A builder without structured addresses: what an application had to do, split the
        # decoded header value itself.
        vals = [h["value"] for h in doc.get("headers", []) if h["name"].lower() == f][:1]
        r[f] = [norm_addr(n, ad) for n, ad in email.utils.getaddresses(vals) if n or ad]
    r["text"] = nl(doc.get("text"))
    r["html"] = nl(doc.get("html"))
    atts = doc.get("attachments", [])
    r["attachment_names"] = [ws(a.get("filename", "")) for a in atts]
    r["attachment_types"] = [a.get("content_type", "") for a in atts]
    sizes = []
    for a in atts:
        if "content_base64" in a:
            sizes.append(lf_size(base64.b64decode(a["content_base64"]), a.get("content_type", "")))
        else:
            sizes.append(a.get("size", 0))
    r["attachment_sizes"] = sizes
    return r


def run_dump(dump, files):
    out = {}
    for i in range(0, len(files), 50):
        chunk = files[i:i + 50]
        p = subprocess.run([dump] + chunk, capture_output=True, timeout=120)
        lines = p.stdout.decode("utf-8", "replace").splitlines()
        if p.returncode < 0 or len(lines) != len(chunk):
            for f in chunk:  # one at a time, so a crash names its file
                q = subprocess.run([dump, f], capture_output=True, timeout=60)
                if q.returncode < 0 or not q.stdout.strip():
                    out[f] = {"error": "mx-json-dump died (signal %d)" % -q.returncode}
                else:
                    out[f] = json.loads(q.stdout)
            continue
        for line in lines:
            j = json.loads(line)
            out[j["file"]] = j
    return out


def load_allowlist(path):
    entries = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 3)
            if len(parts) < 4:
                sys.exit("%s:%d: want 'FILE FIELD CATEGORY reason'" % (path, n))
            entries[(parts[0], parts[1])] = (parts[2], parts[3])
    return entries


def same(our, ref):
    """Equal, where a run of U+FFFD in the reference (bytes Python could not decode and
    replaced) matches any non-empty run of characters in ours."""
    if our == ref:
        return True
    if isinstance(our, list) and isinstance(ref, list):
        return len(our) == len(ref) and all(same(a, b) for a, b in zip(our, ref))
    if isinstance(our, str) and isinstance(ref, str) and "\ufffd" in ref:
        parts = re.split("\ufffd+", ref)
        pattern = ".+?".join(re.escape(p) for p in parts)
        return re.fullmatch(pattern, our, re.S) is not None
    return False


def short(v, n=160):
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= n else s[:n] + "..."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--allowlist", required=True)
    ap.add_argument("--docs", help="docs/targets.md: every allow-list category must appear")
    ap.add_argument("--max-rate", type=float, default=0.02)
    ap.add_argument("--verbose", action="store_true", help="print every disagreement")
    ap.add_argument("--write-allowlist", help="write the current disagreements here (review!)")
    a = ap.parse_args()

    files = []
    for root, _, names in os.walk(a.corpus):
        for n in names:
            if n.startswith(".") or n.lower() in ("readme", "readme.md", "license"):
                continue
            files.append(os.path.join(root, n))
    files.sort()
    dumps = run_dump(a.dump, files)
    allow = load_allowlist(a.allowlist)
    used = set()
    fields = 0
    disagree = []
    gave_up = []
    problems = []
    for f in files:
        rel = os.path.relpath(f, a.corpus)
        with open(f, "rb") as fh:
            raw = fh.read()
        d = dumps.get(f, {"error": "no output"})
        try:
            ref = reference(raw)
        except Exception as e:
            ref = {k: "<reference error: %s>" % type(e).__name__ for k in FIELDS}
        our = ours(d["json"]) if "json" in d else {k: "<error: %s>" % d.get("error") for k in FIELDS}
        for k in FIELDS:
            if isinstance(ref[k], str) and ref[k].startswith("<reference error"):
                gave_up.append((rel, k))  # no reference value: not compared
                continue
            fields += 1
            if same(our[k], ref[k]):
                continue
            disagree.append((rel, k))
            if (rel, k) in allow:
                used.add((rel, k))
                if a.verbose:
                    print("allowed  %s %s [%s]" % (rel, k, allow[(rel, k)][0]))
                continue
            problems.append("%s %s\n    ours: %s\n    ref:  %s" % (rel, k, short(our[k]), short(ref[k])))
    stale = sorted(set(allow) - used)
    rate = len(disagree) / fields if fields else 0.0
    print("corpus: %d messages, %d fields compared, %d disagree (%.2f%%), %d allowed, %d new"
          % (len(files), fields, len(disagree), 100 * rate, len(used), len(problems)))
    groups = {}
    for rel, k in disagree:
        groups.setdefault(rel.split(os.sep)[0], 0)
        groups[rel.split(os.sep)[0]] += 1
    for g in sorted(groups):
        print("  %-20s %d" % (g, groups[g]))
    print("not compared (Python raised, no reference value): %d field(s)" % len(gave_up))
    for rel, k in gave_up:
        print("  %s %s" % (rel, k))
    if a.write_allowlist:
        with open(a.write_allowlist, "w", encoding="utf-8") as out:
            for rel, k in disagree:
                cat, why = allow.get((rel, k), ("TODO", "explain"))
                out.write("%s %s %s %s\n" % (rel, k, cat, why))
    ok = True
    for p in problems:
        print("NEW DISAGREEMENT " + p)
        ok = False
    for rel, k in stale:
        print("STALE allow-list entry (agrees now, remove it): %s %s" % (rel, k))
        ok = False
    if a.docs:
        with open(a.docs, encoding="utf-8") as fh:
            docs = fh.read()
        for cat in sorted({c for c, _ in allow.values()}):
            if "`%s`" % cat not in docs:
                print("allow-list category `%s` is not described in %s" % (cat, a.docs))
                ok = False
    if rate > a.max_rate:
        print("disagreement rate %.2f%% is over %.2f%%" % (100 * rate, 100 * a.max_rate))
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
