"""The app of tests/test_processes.py: every answer says which worker
process served it and which version of this file it imported.

The test copies this file and rewrites the VERSION line between reloads.

- /slow?seconds=S&path=FILE: appends the pid to FILE (if given), sleeps S
  seconds, then answers;
- /grow?mib=N: keeps N MiB more alive in this process (for --reload-on-rss);
- /segfault: dereferences NULL (a real SIGSEGV, not one sent by kill);
- anything else answers at once.

Only the standard library; wrapped in wsgiref.validate.validator.
"""

import json
import os
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

VERSION = "v0"

BALLAST = []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/slow":
        if "path" in query:
            with open(query["path"], "a") as f:
                f.write(f"{os.getpid()}\n")
        time.sleep(float(query.get("seconds", "1")))
    elif path == "/grow":
        BALLAST.append(b"x" * (int(query["mib"]) << 20))
    elif path == "/segfault":
        import ctypes

        ctypes.string_at(0)
    body = json.dumps({
        "pid": os.getpid(),
        "version": VERSION,
        "multiprocess": environ["wsgi.multiprocess"],
        "multithread": environ["wsgi.multithread"],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


application = validator(app)
