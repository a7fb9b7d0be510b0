"""A Flask site as deployed behind nginx (tests/test_django_flask.py): its
absolute URLs say the scheme and host the browser used, which needs the
port in HTTP_HOST and, behind a TLS load balancer, the balancer's
X-Forwarded-Proto believed by rustgi (--trusted-proxy-header)."""

from flask import Flask, jsonify, request, url_for

app = Flask(__name__)


@app.get("/where")
def where():
    return jsonify(
        url=url_for("where", _external=True),
        scheme=request.scheme,
        secure=request.is_secure,
        host=request.host,
    )
