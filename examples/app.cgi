#!/bin/sh
# rustgi-gateway started by the web server, with your app: as a CGI program
# (apache-cgid.conf) or, unchanged, as a FastCGI program that Apache mod_fcgid
# starts once and keeps (apache-fcgid.conf).
#
# Install it as /srv/app/app.cgi, executable (chmod 755), next to your app.
# Under mod_cgid rustgi sees GATEWAY_INTERFACE, serves the one request in its
# environment and stdin, and exits. Under mod_fcgid it finds a listening
# socket on fd 0 and serves FastCGI on it until Apache stops it.
#
# Web servers start it with a bare environment: name everything here, e.g.
# --venv /srv/app/venv, --env DJANGO_SETTINGS_MODULE=site.settings.
#
# The arguments the server passes are ignored on purpose: for a query string
# without "=" (an ISINDEX query such as /?--socket) CGI servers pass its words
# as arguments, and they must never reach rustgi's command line. For the same
# reason, never point ScriptAlias at the rustgi-gateway binary itself.
exec /usr/local/bin/rustgi-gateway --app /srv/app/app.py
