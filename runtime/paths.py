"""Where the repository keeps what the runtime serves by default."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The released model (models/<name>/, made by `cxr release`): what `cxr build`, `cxr api` and the release tests use
# when no other model is named.
RELEASE_DIR = REPO / "models" / "cxr-triage-lite0"
