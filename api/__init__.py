"""The ZensCall REST API (Flask + flask-smorest). ``create_app`` wires it."""

from api.app import create_app

__all__ = ["create_app"]
