"""The app of tests/test_examples_lighttpd.py and tests/test_spawn.py: the
rendered /srv/app/app.py of the lighttpd examples, of rustgi.service and of
the spawn-fcgi runs. `application` is wrapped in wsgiref.validate.validator,
so every request also checks PEP 3333. Routes on PATH_INFO:

- /sleep/SECS  sleeps SECS seconds (a float), then answers as below: a
               request still in flight when the gateway is told to stop.
- /status/N    answers status N (with the JSON below).
- anything else answers JSON: every str value of the environ, the body it
  read (latin-1, CONTENT_LENGTH bytes read with read(size)), wsgi.run_once /
  multithread / multiprocess, and the process serving it: pid, ppid and its
  command line.

Only the standard library is used: front servers start it as www-data,
with whatever Python that user can load.
"""

import json
import os
import time
from wsgiref.validate import validator


def read_body(environ):
    stream = environ["wsgi.input"]
    left = int(environ.get("CONTENT_LENGTH") or 0)
    parts = []
    while left > 0:
        data = stream.read(min(left, 65536))
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def example_app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    parts = path.split("/")
    status = "200 OK"
    if len(parts) == 3 and parts[1] == "sleep":
        time.sleep(float(parts[2]))
    elif len(parts) >= 2 and parts[-2] == "status" and parts[-1].isdigit():
        status = f"{parts[-1]} Chosen"
    body = read_body(environ)
    data = json.dumps(
        {
            "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
            "body": body.decode("latin-1"),
            "run_once": environ["wsgi.run_once"],
            "multithread": environ["wsgi.multithread"],
            "multiprocess": environ["wsgi.multiprocess"],
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "cmdline": cmdline(os.getpid()),
        },
        sort_keys=True,
    ).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


application = validator(example_app)
