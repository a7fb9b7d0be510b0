"""Serves bench/app.py with flup 1.0.3 on a Unix socket, as bench/run's flup
targets: `python flup_server.py scgi|fcgi SOCKET` or `python flup_server.py
ajp HOST:PORT` (flup's AJP server listens on TCP only). flup's threaded
servers with their default thread pool (1 to 5 idle threads, no upper
limit)."""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from app import application  # noqa: E402


def main():
    proto, socket_path = sys.argv[1], sys.argv[2]
    if proto == "scgi":
        from flup.server.scgi import WSGIServer
        # Without scriptName flup takes PATH_INFO from REQUEST_URI (nginx's
        # scgi_params send no PATH_INFO).
        server = WSGIServer(application, bindAddress=socket_path, umask=0,
                            loggingLevel=logging.WARNING)
    elif proto == "fcgi":
        from flup.server.fcgi import WSGIServer
        server = WSGIServer(application, bindAddress=socket_path, umask=0)
    elif proto == "ajp":
        from flup.server.ajp import WSGIServer
        host, port = socket_path.rsplit(":", 1)
        server = WSGIServer(application, bindAddress=(host, int(port)),
                            loggingLevel=logging.WARNING)
    else:
        sys.exit(f"usage: {sys.argv[0]} scgi|fcgi SOCKET | ajp HOST:PORT")
    server.run()


if __name__ == "__main__":
    main()
