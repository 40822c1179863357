"""The WSGI entry point for a production server: `gunicorn 'arbridge.web.wsgi:app'`.

Settings come from ARBRIDGE_* variables, read once when the worker process starts."""

from arbridge.config import Settings
from arbridge.runtime import Runtime
from arbridge.web import create_app

app = create_app(Runtime.open(Settings.from_env()))
