#!/usr/bin/env python3
"""Server-side latency of the web console's pages, one client, sequential
requests on the loopback (so latency ~ the server's time per page).

Usage: python3 bench/console.py BASE_URL ADMIN_KEY [N] [PAGE...]
Signs in with ADMIN_KEY (an admin key), then GETs each page N times
(default 500) after 20 warm-up requests (the PAGEs if given, else the
overview, audit and keys pages), and prints p50, p99 and max in ms.
"""
import http.client
import re
import sys
import time
import urllib.parse

base, key = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 500
u = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(u.hostname, u.port)


def request(method, path, body=None, cookie=""):
    headers = {"Cookie": cookie}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    return r, r.read().decode()


def cookie(r, name):
    for k, v in r.getheaders():
        if k.lower() == "set-cookie" and v.startswith(name + "="):
            return v.split(";", 1)[0].split("=", 1)[1]
    raise SystemExit(f"no {name} cookie")


r, html = request("GET", "/console/sign-in")
pre = cookie(r, "commonlab_console_pre")
csrf = re.search(r'name="_csrf" value="([^"]+)"', html).group(1)
body = urllib.parse.urlencode({"_csrf": csrf, "key": key, "next": ""})
r, _ = request("POST", "/console/sign-in", body, f"commonlab_console_pre={pre}")
assert r.status == 303, r.status
session = f"commonlab_console={cookie(r, 'commonlab_console')}"

pages = sys.argv[4:] or ["/console/", "/console/audit", "/console/keys"]
for page in pages:
    for _ in range(20):
        request("GET", page, cookie=session)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r, _ = request("GET", page, cookie=session)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status == 200, (page, r.status)
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"{page:16} n={n} p50={p(0.5):.2f} ms p99={p(0.99):.2f} ms max={times[-1]:.2f} ms")
