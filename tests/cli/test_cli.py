"""One command line: every stage is a subcommand, each shows its options with their defaults."""

import subprocess
import sys

import pytest

from cxr.cli import COMMANDS, main
from tests.conftest import REPO


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name, (_, text) in COMMANDS.items():
        assert name in out and text.split(",")[0][:30] in " ".join(out.split())


def test_every_command_module_has_add_arguments_and_run():
    import importlib

    for name, (module, _) in COMMANDS.items():
        loaded = importlib.import_module(module)
        assert callable(loaded.add_arguments) and callable(loaded.run), name
        assert module.split(".")[-2:] == ["commands", module.split(".")[-1]] or module == "api.commands", name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help_with_defaults(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cxr {name}")
    if name in ("train", "prepare", "evaluate", "compare", "export", "build", "serve"):
        assert "(default:" in out


def test_unknown_command_and_missing_options_are_usage_errors():
    for args in (["frobnicate"], ["train"], []):
        result = subprocess.run([sys.executable, "-m", "cxr", *args], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 2 and "usage: cxr" in result.stderr, args


def test_build_py_is_an_alias(tmp_path):
    result = subprocess.run([sys.executable, "build.py", "verify", "--help"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: cxr verify")
