"""The web console: a browser app of static files (ES modules, no build step) that calls only the public REST
API with the user's own token. ``dais api`` and ``dais serve`` serve it at ``/`` (``api/console.py``)."""
