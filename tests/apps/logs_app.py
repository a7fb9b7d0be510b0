"""What an application writes to its log streams, one path each, for
tests/test_logs.py (issue 14, item 3)."""

import io
import logging
import subprocess
import sys
import threading
import traceback

print("printed at import")

_logger = None
_lock = threading.Lock()


def logger(environ):
    """A logger writing to this request's wsgi.errors (as Flask's and
    Django's handlers do)."""
    log = logging.getLogger("logs_app." + str(id(environ)))
    log.propagate = False
    handler = logging.StreamHandler(environ["wsgi.errors"])
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    return log, handler


def fail(depth):
    if depth == 0:
        raise ValueError("deep failure")
    fail(depth - 1)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    errors = environ["wsgi.errors"]
    body = b"ok\n"
    if path == "/print-exc":
        try:
            fail(5)
        except ValueError:
            traceback.print_exc(file=errors)
    elif path == "/logging":
        log, handler = logger(environ)
        log.warning("first record")
        try:
            fail(3)
        except ValueError:
            log.exception("second record, with its traceback")
        log.removeHandler(handler)
    elif path == "/print":
        print("hello from print", environ.get("QUERY_STRING", ""))
        print("to stderr", file=sys.stderr)
        sys.stdout.write("partial ")
        sys.stdout.write("line\n")
        sys.stdout.write("left open")
    elif path == "/stream-facts":
        out = sys.stdout
        facts = {
            "write": out.write(""),
            "count": out.write("héllo\n"),
            "isatty": out.isatty(),
            "encoding": out.encoding,
            "fileno": out.fileno(),
            "textio": isinstance(out, io.TextIOBase),
            "stderr_fileno": sys.stderr.fileno(),
        }
        body = repr(facts).encode() + b"\n"
    elif path == "/subprocess":
        # A child given our stdout writes to the real fd 1, around the log.
        subprocess.run([sys.executable, "-c", "print('from the child')"], stdout=sys.stdout, check=True)
    elif path == "/thread":
        t = threading.Thread(target=lambda: print("from a thread of the app"))
        t.start()
        t.join()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
