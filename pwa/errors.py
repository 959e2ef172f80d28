"""The one error of the site build: its inputs (model folder, node_modules, dist/) cannot make a site."""

from __future__ import annotations


class SiteError(ValueError):
    """The inputs cannot make a site (model folder or node_modules incomplete); the message says what to do."""
