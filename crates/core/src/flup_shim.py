"""flup's server modules as rustgi-gateway provides them.

A flup site's `dispatch.fcgi` ends in `WSGIServer(app, ...).run()`. Under
rustgi that call must not serve: rustgi already listens. So
`flup.server.fcgi` (and the other server modules) come from here: their
`WSGIServer.run()` hands the application to rustgi and ends the script,
as flup's `run()` would have blocked it until shutdown. Each constructor
argument is logged with what it became.

Only the modules that hold a `WSGIServer` come from here. When a real
flup is installed, `flup`, `flup.server` and the rest (`flup.client`,
`fcgi_base`, ...) stay the real ones; without it, this module provides the
two packages and `fcgi_base`'s role constants, so that a script runs with
nothing installed.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

# Set by rustgi: log(level, message) into rustgi's log.
log = None

# flup module -> (protocol it spoke, how it ran requests)
SERVERS = {
    "flup.server.fcgi": ("FastCGI", "threads"),
    "flup.server.fcgi_fork": ("FastCGI", "processes"),
    "flup.server.fcgi_single": ("FastCGI", "single"),
    "flup.server.scgi": ("SCGI", "threads"),
    "flup.server.scgi_fork": ("SCGI", "processes"),
    "flup.server.ajp": ("AJP", "threads"),
    "flup.server.ajp_fork": ("AJP", "processes"),
    "flup.server.cgi": ("CGI", "single"),
}

# What fcgi_base exports that scripts pass to WSGIServer(roles=...).
FCGI_RESPONDER, FCGI_AUTHORIZER, FCGI_FILTER = 1, 2, 3
ROLE_NAMES = {FCGI_RESPONDER: "responder", FCGI_AUTHORIZER: "authorizer", FCGI_FILTER: "filter"}
FCGI_CONSTANTS = {
    "FCGI_RESPONDER": FCGI_RESPONDER,
    "FCGI_AUTHORIZER": FCGI_AUTHORIZER,
    "FCGI_FILTER": FCGI_FILTER,
    "FCGI_MAX_CONNS": "FCGI_MAX_CONNS",
    "FCGI_MAX_REQS": "FCGI_MAX_REQS",
    "FCGI_MPXS_CONNS": "FCGI_MPXS_CONNS",
}


class HandedOver(BaseException):
    """Raised by `WSGIServer.run()`: ends the script there. A
    BaseException, as SystemExit is, so that the script's
    `except Exception:` does not swallow it."""


class NoDefault:
    """flup.server.NoDefault (scgi's scriptName default)."""


# (module, application, keyword arguments) of the first run().
handed = []


def _flag_list(flag, values):
    return " ".join(f"{flag} {v}" for v in values)


def _socket_flag(address):
    if isinstance(address, (tuple, list)) and len(address) == 2:
        return f"--socket {address[0]}:{address[1]}"
    return f"--socket {address}"


def describe(module, kw):
    """(level, text) for each argument: what it became under rustgi."""
    protocol, model = SERVERS[module]
    said = []

    def say(level, name, text):
        shown = kw[name]
        shown = f"0o{shown:03o}" if name == "umask" and isinstance(shown, int) else repr(shown)
        said.append((level, f"{module}.WSGIServer {name}={shown}: {text}"))

    for name in kw:
        value = kw[name]
        if name == "environ":
            if value:
                say("info", name, "added to every request's environ, as flup did")
        elif name == "bindAddress":
            if value is None:
                say("info", name, "the socket the web server passed on fd 0; "
                    "rustgi takes it too when started without --socket")
            else:
                say("warn", name, f"not opened by the script: rustgi listens where its own "
                    f"flags say; {_socket_flag(value)} is the equivalent")
        elif name == "umask":
            if value is not None:
                say("warn", name, f"not applied: rustgi sets the socket's mode with "
                    f"--chmod {0o777 & ~int(value):o} (and its owner with --chown)")
        elif name == "multithreaded":
            if value:
                say("info", name, "rustgi runs requests on --threads N Python threads (default 8)")
            else:
                say("warn", name, "flup ran one request at a time: give --threads 1 "
                    "if the application is not thread-safe")
        elif name == "multiprocess":
            say("info", name, "worker processes are --processes N")
        elif name in ("maxThreads",):
            say("warn", name, f"not applied: --threads {value} is the equivalent")
        elif name in ("minSpare", "maxSpare"):
            say("info", name, "no equivalent: rustgi starts its --threads (or --processes) "
                "at once and keeps them")
        elif name == "maxChildren":
            say("warn", name, f"not applied: --processes {value} is the equivalent")
        elif name == "maxRequests":
            say("warn", name, f"not applied: --max-requests {value} is the equivalent")
        elif name == "multiplexed":
            say("info", name, "nothing to do: rustgi answers multiplexed and kept "
                "FastCGI connections itself")
        elif name == "debug":
            if value:
                say("warn", name, "flup sent tracebacks to the browser; rustgi logs them "
                    "and answers 500 instead")
            else:
                say("info", name, "tracebacks go to rustgi's log, never to the browser")
        elif name == "roles":
            roles = ",".join(ROLE_NAMES.get(r, str(r)) for r in value)
            say("info", name, f"rustgi accepts --fastcgi-roles {roles} "
                "(all three by default)")
        elif name == "forceCGI":
            if value:
                say("warn", name, "not applied: run rustgi-gateway --proto cgi as the CGI program")
        elif name == "scriptName":
            if value is not NoDefault and value:
                say("warn", name, f"not applied: --mount {value} is the equivalent")
        elif name == "allowedServers":
            if value:
                say("warn", name, "not applied: "
                    f"{_flag_list('--allow-from', value)} is the equivalent")
        elif name == "loggingLevel":
            say("info", name, "rustgi's own log level is --log-level; "
                "the application's logging stays as it configures it")
        elif name == "timeout":
            say("info", name, "rustgi times each stage with --header-timeout, --body-timeout "
                "and --write-timeout; --timeout limits a request's run")
        else:
            say("warn", name, "unknown to rustgi; ignored")
    if protocol == "AJP":
        said.append(("warn", f"{module}: rustgi does not speak AJP: point the web server at "
                     "rustgi with FastCGI, SCGI or uwsgi instead"))
    elif protocol == "CGI":
        said.append(("info", f"{module}: served as rustgi's --proto says; for CGI, "
                     "make rustgi-gateway itself the CGI program"))
    else:
        said.append(("info", f"{module}: the script spoke {protocol}; rustgi speaks what --proto says "
                     "(with --socket and no --proto: FastCGI, SCGI or uwsgi, told apart "
                     "per connection)"))
    return said


def with_environ(application, extra):
    """flup copied `environ=` into each request's environ, over what the
    web server sent."""
    extra = dict(extra)

    def wrapped(environ, start_response):
        environ.update(extra)
        return application(environ, start_response)

    return wrapped


def _server_class(module):
    class WSGIServer:
        __doc__ = f"{module}.WSGIServer as rustgi provides it: run() hands the app over."

        def __init__(self, application, *args, **kw):
            if args:
                raise TypeError(f"{module}.WSGIServer: give its options by name "
                                f"(bindAddress=..., not positionally)")
            self.application = application
            self.kw = kw

        def run(self):
            if not handed:
                handed.append((module, self.application, self.kw))
            raise HandedOver()

    WSGIServer.__module__ = module
    return WSGIServer


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        if name in SERVERS:
            module.WSGIServer = _server_class(name)
            module.__all__ = ["WSGIServer"]
            if "fcgi" in name:
                module.__dict__.update(FCGI_CONSTANTS)
        elif name == "flup.server":
            module.NoDefault = NoDefault
        elif name == "flup.server.fcgi_base":
            module.__dict__.update(FCGI_CONSTANTS)


PACKAGES = ("flup", "flup.server")


class Finder(importlib.abc.MetaPathFinder):
    """First on sys.meta_path: flup's server modules always come from here;
    the packages and fcgi_base only when no real flup is found."""

    def find_spec(self, fullname, path, target=None):
        if fullname in SERVERS:
            return importlib.util.spec_from_loader(fullname, _Loader())
        if fullname in PACKAGES or fullname == "flup.server.fcgi_base":
            if path is not None or fullname == "flup":
                real = importlib.machinery.PathFinder.find_spec(fullname, path)
                if real is not None:
                    return None
            return importlib.util.spec_from_loader(
                fullname, _Loader(), is_package=fullname in PACKAGES)
        return None


def install(logger):
    global log
    log = logger
    if not any(isinstance(f, Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, Finder())


def take(where):
    """The application handed over while `where` ran, with each argument
    logged; None when nothing was handed over."""
    if not handed:
        return None
    module, application, kw = handed.pop(0)
    del handed[:]
    log("info", f"{where}: {module}.WSGIServer(...).run() handed the application "
        "to rustgi-gateway; the rest of the script does not run")
    for level, text in describe(module, kw):
        log(level, text)
    if kw.get("environ"):
        application = with_environ(application, kw["environ"])
    return application


def run_script(path):
    """Runs `path` as `python path` would (as `__main__`) and returns
    (handed-over application or None, the script's globals as a module)."""
    import runpy

    del handed[:]
    found = None
    try:
        found = runpy.run_path(path, run_name="__main__")
    except HandedOver:
        pass
    application = take(path)
    if application is not None:
        return application, None
    namespace = types.ModuleType("__main__")
    namespace.__dict__.update(found)
    return None, namespace
