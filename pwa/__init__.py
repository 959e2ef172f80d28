"""The static PWA: `pwa.site.build_site` renders dist/ from an export; `pwa.serve` serves it on 127.0.0.1."""
