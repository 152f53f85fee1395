#!/usr/bin/env python3
"""Normalise request URLs to endpoint patterns (METHOD /path/{placeholders}?query).

Library use: `path_pattern(url, names)`.
CLI use (for `az --debug` logs):
    endpoints.py --names rg=NAME,vm=NAME,... LOG...
reads the urllib3 request lines (`https://host:port "GET /path?q HTTP/1.1" 200 123`) in the
given logs and prints each distinct `METHOD pattern  [statuses]`, sorted by path.
"""

import argparse
import re
import sys
from urllib.parse import parse_qsl, urlsplit

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# A segment after one of these is an opaque id (operation ids, locations, deployments...).
OPAQUE_AFTER = {
    "operations": "{opId}", "operationresults": "{opId}", "operationstatuses": "{opId}",
    "asyncoperations": "{opId}", "pooloperationresults": "{opId}", "locations": "{loc}",
    "deployments": "{deployment}", "publishers": "{publisher}", "offers": "{offer}",
    "skus": "{sku}", "versions": "{version}",
}
KEEP_VALUES = {"api-version", "statusOnly", "$expand", "monitor", "grant_type", "forceDeletion"}
URLLIB3_RE = re.compile(r'(https?://[^ "]+) "([A-Z]+) (\S+) HTTP/1\.[01]" (\d{3})')


def path_pattern(url, names):
    parts = urlsplit(url)
    segs = parts.path.split("/")
    out = []
    for i, seg in enumerate(segs):
        prev = segs[i - 1].lower() if i > 0 else ""
        if seg in names:
            out.append(names[seg])
        elif seg.lower() in names:
            out.append(names[seg.lower()])
        elif prev in OPAQUE_AFTER and seg:
            out.append(OPAQUE_AFTER[prev])
        elif UUID_RE.match(seg):
            out.append("{uuid}")
        else:
            out.append(seg)
    q = parse_qsl(parts.query, keep_blank_values=True)
    qs = "&".join(f"{k}={v}" if k in KEEP_VALUES else k for k, v in q)
    return "/".join(out) + (("?" + qs) if qs else "")


def format_endpoints(pairs):
    """pairs: iterable of (method, pattern, status) -> sorted list of lines."""
    seen = {}
    for method, pattern, status in pairs:
        seen.setdefault((method, pattern), set()).add(int(status))
    return [f"{m} {p}  [{','.join(str(s) for s in sorted(st))}]"
            for (m, p), st in sorted(seen.items(), key=lambda kv: (kv[0][1].lower(), kv[0][0]))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", default="", help="placeholder=literal,...")
    ap.add_argument("--host", default=None, help="only requests to this host:port")
    ap.add_argument("logs", nargs="+")
    args = ap.parse_args()
    names = {}
    for item in filter(None, args.names.split(",")):
        ph, lit = item.split("=", 1)
        names[lit] = "{" + ph + "}"
        names[lit.lower()] = "{" + ph + "}"
    pairs = []
    for path in args.logs:
        with open(path, errors="replace") as f:
            for line in f:
                m = URLLIB3_RE.search(line)
                if not m:
                    continue
                base, method, target, status = m.groups()
                if args.host and args.host not in base:
                    host = urlsplit(base).netloc
                    pairs.append((method, f"[{host}] " + path_pattern(base + target, names), status))
                    continue
                pairs.append((method, path_pattern(base + target, names), status))
    for line in format_endpoints(pairs):
        print(line)


if __name__ == "__main__":
    sys.exit(main())
