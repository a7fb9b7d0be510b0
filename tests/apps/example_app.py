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

Only the standard library is used (and echo.py, copied along): front servers start it as www-data,
with whatever Python that user can load.
"""

import time
from wsgiref.validate import validator

from echo import answer_json, chosen_status, process


def example_app(environ, start_response):
    parts = environ.get("PATH_INFO", "").split("/")
    if len(parts) == 3 and parts[1] == "sleep":
        time.sleep(float(parts[2]))
    return answer_json(
        environ, start_response, chosen_status(environ.get("PATH_INFO", "")),
        run_once=environ["wsgi.run_once"],
        multithread=environ["wsgi.multithread"],
        multiprocess=environ["wsgi.multiprocess"],
        **process(),
    )


application = validator(example_app)
