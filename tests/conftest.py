"""Fixtures: one nginx and the rustgi-gateway processes behind it.

Layout of a run:
- /tmp/rustgi-test-XXXX (mode 0755, so nginx's workers can reach the sockets;
  nginx also runs with `user root;` when we are root): the gateways' Unix
  sockets, nginx.conf and nginx's temp directories. Removed at the end.
- tests/.run/logs/: every gateway's stderr (`<name>.log`) and nginx's
  error/access logs, kept after the run for reading. Cleared at the start,
  unless another pytest session in this checkout is running (`log_dir`).
- tests/.run/rss.txt: the memory figures of test_memory.py.

nginx routes by location prefix; each prefix belongs to one gateway, all
sharing one session-scoped nginx. A gateway is started the first time a test
asks for it (session scope) and stopped with SIGTERM at the end; a location
whose gateway is not running answers 502.

| location       | gateway | how it is started                                       |
|----------------|---------|---------------------------------------------------------|
| /              | main    | --app tests/apps/conformance.py --threads 8            |
| /unbuffered/   | main    | (same; scgi_request_buffering off, scgi_buffering off)   |
| /app/          | mount   | --chdir tests/apps --app conformance --mount /app --env |
| /flask/        | flask   | --venv .venv-test --app tests/apps/flask_app.py:app      |
| /demo/         | demo    | no --app: the built-in demo                              |
| /par/          | par     | --pythonpath tests/apps, conformance:application, 40 thr |
| /mem/          | mem     | conformance (scgi_buffering off)                         |

FastCGI (`--proto fastcgi`) has servers of its own on other ports
(`nginx.url(path, server=NAME)`, `nginx.server_port(NAME)`), each location
including the stock /etc/nginx/fastcgi_params as shipped:

| server        | location | gateway    | notes                                          |
|---------------|----------|------------|------------------------------------------------|
| fcgi          | /        | fcgi       | stock params (SCRIPT_NAME = path, no PATH_INFO) |
| fcgi          | /wa/     | fcgi       | + SCRIPT_NAME "" and PATH_INFO $uri            |
| fcgi          | /app/    | fcgi-mount | --mount /app                                   |
| fcgi          | /par/    | fcgi-par   | --threads 40                                   |
| fcgi-quiet    | /        | fcgi-quiet | --no-fastcgi-stderr                            |
| fcgi-ka       | /        | fcgi-ka    | upstream keepalive 4 + fastcgi_keep_conn on    |
| fcgi-ka-plain | /        | fcgi-ka    | no keep_conn                                   |

uwsgi (`--proto uwsgi`) likewise, every location including the stock
/etc/nginx/uwsgi_params as shipped (PATH_INFO = $document_uri, no
SCRIPT_NAME):

| server | location     | gateway     | notes                                        |
|--------|--------------|-------------|----------------------------------------------|
| uwsgi  | /            | uwsgi       | stock params                                 |
| uwsgi  | /unbuffered/ | uwsgi       | uwsgi_request_buffering off, uwsgi_buffering off |
| uwsgi  | /app/        | uwsgi-mount | --mount /app                                 |
| uwsgi  | /par/        | uwsgi-par   | --threads 40                                 |

The conformance matrix (tests/plugins/conformance.py) adds a server per
protocol and lane, `conf-PROTO-LANE` (PROTO scgi, fastcgi or uwsgi; LANE
python or io), each with `/` and `/unbuffered/` to the gateway of the same
name, which runs the conformance app with RUSTGI_LANE=LANE.

Tests that stop their gateway, or need one with other flags, start their
own (`gateways.start(name, args)`, or `gateways.make(name, args, fd0=...)`
for one that takes its socket on fd 0) and, to reach it through nginx, an
nginx of their own (`private_nginx`).
"""

# The fixtures live in plugin modules, each one job:
# - plugins.base: prerequisites, directories, gateways, the session's nginx;
# - plugins.fronts: Apache, lighttpd and the processes one test starts;
# - plugins.conformance: the protocol x front server x lane matrix.
pytest_plugins = ["plugins.base", "plugins.fronts", "plugins.conformance"]
