"""How rustgi reports an application that fails to import: the traceback
without importlib's own frames (CPython drops them for an `import`
statement, but not under importlib.import_module, which rustgi uses), and,
for an ImportError, where Python looked: the working directory and
sys.path."""

import importlib
import os
import sys
import traceback


def _ours(frame):
    if frame.filename.startswith("<frozen importlib"):
        return False
    return not (frame.filename == importlib.__file__ and frame.name == "import_module")


def _strip(te, seen):
    while te is not None and id(te) not in seen:
        seen.add(id(te))
        te.stack = traceback.StackSummary.from_list([f for f in te.stack if _ours(f)])
        _strip(te.__cause__, seen)
        te = te.__context__


def _chain(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def format_load_error(exc, tb):
    if tb is not None:
        exc = exc.with_traceback(tb)
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    _strip(te, set())
    text = "".join(te.format()).rstrip()
    if any(isinstance(e, ImportError) for e in _chain(exc)):
        lines = [text, "working directory: " + os.getcwd(), "sys.path:"]
        lines += ["  " + (p or "'' (the working directory)") for p in sys.path]
        text = "\n".join(lines)
    return text
