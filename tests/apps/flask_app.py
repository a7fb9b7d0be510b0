"""A small Flask application, served with `--venv .venv-test` (Flask is
installed only there, so serving it at all shows that --venv works).

Not wrapped in wsgiref.validate.validator: Werkzeug reads a terminated
wsgi.input with read() and no size, which the validator forbids. The Flask
app is here to show that a real framework runs unchanged.
"""

import sys

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/flask/hello")
def hello():
    return "hello from flask\n"


@app.post("/flask/json")
def echo_json():
    return jsonify(
        received=request.get_json(),
        path=request.path,
        script_root=request.script_root,
        prefix=sys.prefix,
    )


application = app
