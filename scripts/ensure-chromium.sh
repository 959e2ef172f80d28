#!/bin/sh
# Browser tests drive Debian's chromium (Playwright cannot download browsers offline). Install it when missing and
# we are root; otherwise say how to get one. Tests that need it skip with the same message when it is absent.
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    command -v chromium >/dev/null 2>&1 && exit 0
    echo "error: apt-get could not install chromium" >&2
    exit 1
fi
echo "note: no 'chromium' on PATH, so browser tests will be skipped. Install it with: sudo apt-get install chromium" >&2
