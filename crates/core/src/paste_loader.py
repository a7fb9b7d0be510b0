"""--paste PATH[#NAME]: a PasteDeploy ini file's application, as pserve,
gunicorn --paste and uWSGI's paste= load it.

The ini's logging sections are applied first, so that what the
application logs while it loads is configured already: with
`logging.config.fileConfig`, the `here` and `__file__` defaults that
PasteDeploy itself gives, and `disable_existing_loggers=False` (as
plaster_pastedeploy and gunicorn do: loggers made at import time keep
working). Then `paste.deploy.loadapp("config:" + absolute path, name=NAME)`
builds the app or pipeline; NAME defaults to `main`.
"""

import configparser
import logging.config
import os


def configure_logging(path):
    """The ini's logging sections, if it has them: True when applied."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--paste: no ini file at {path}")
    defaults = {"here": os.path.dirname(path), "__file__": path}
    parser = configparser.ConfigParser(defaults=defaults)
    parser.read(path)
    if not parser.has_section("loggers"):
        return False
    logging.config.fileConfig(path, defaults, disable_existing_loggers=False)
    return True


def load(path, name):
    try:
        from paste.deploy import loadapp
    except ImportError as e:
        raise ImportError(
            "--paste needs PasteDeploy in the application's Python: "
            "pip install PasteDeploy (in the --venv, if one is given)") from e
    return loadapp("config:" + path, name=name or "main", relative_to=os.path.dirname(path))
