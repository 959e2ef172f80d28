"""The app's names and colours (index.html uses them too) and its manifest.webmanifest."""

from __future__ import annotations

import json

APP_NAME = "Chest X-ray triage"
SHORT_NAME = "CXR triage"
DESCRIPTION = ("Chest X-ray triage (COVID-19 / Normal / Pneumonia) that runs entirely in your browser, offline: "
               "the image never leaves the device. Research and education only; not a medical device.")
THEME_COLOR = "#12304d"
BACKGROUND_COLOR = "#f6f8fa"


def manifest() -> str:
    """The text of manifest.webmanifest (its icons are pwa/icons.py's)."""
    manifest = {
        "id": "./",
        "name": APP_NAME,
        "short_name": SHORT_NAME,
        "description": DESCRIPTION,
        "lang": "en",
        "start_url": "./",
        "scope": "./",
        "display": "standalone",
        "orientation": "any",
        "theme_color": THEME_COLOR,
        "background_color": BACKGROUND_COLOR,
        "categories": ["medical", "education"],
        "icons": [
            {"src": "icons/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any"},
            {"src": "icons/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
            {"src": "icons/icon-maskable-512.png", "sizes": "512x512", "type": "image/png", "purpose": "maskable"},
        ],
        "prefer_related_applications": False,
    }
    return json.dumps(manifest, indent=2) + "\n"
