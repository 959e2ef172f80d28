"""`cxr COMMAND [options]`: one command line for every stage (`cxr --help` lists them, `cxr COMMAND --help` shows
each one's options with their defaults). `python build.py [options]` is `cxr build [options]`.

A command's module is imported only when that command runs, so `cxr predict`, `cxr serve` and `cxr api` start
without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    module: str  # where it lives
    arguments: str  # its function that adds the options to a parser
    run: str  # its function that runs it with the parsed options; returns the exit status
    help: str


COMMANDS = {
    "build": Command("cxr.pipeline", "add_build_arguments", "run_build",
                     "every stage in order (prepare, train, evaluate, export, pwa), skipping unchanged ones"),
    "prepare": Command("training.data.prepare", "add_arguments", "run",
                       "read datasets, cache preprocessed images, split by patient"),
    "phantoms": Command("training.data.phantoms", "add_arguments", "run",
                        "write synthetic chest phantoms with lesion masks"),
    "train": Command("training.loop.config", "add_arguments", "training.loop.train:run_command",
                     "train a classifier on a prepared folder (resumable), calibrate, fit OOD"),
    "evaluate": Command("training.evaluation.evaluate", "add_arguments", "run",
                        "metrics with patient-level CIs per source, source probe, plots, Grad-CAM, report"),
    "compare": Command("training.evaluation.compare", "add_arguments", "run",
                       "train and evaluate remedy variants under one protocol, tabulate them"),
    "lungs-train": Command("training.loop.lungs", "add_arguments", "run",
                           "train the lung segmenter on the lung masks (split by patient)"),
    "lungs-evaluate": Command("training.evaluation.lungs", "add_arguments", "run",
                              "Dice and IoU of the lung segmenter on held-out masks, fallback rates, contact sheets"),
    "loso": Command("training.evaluation.loso", "add_arguments", "run",
                    "leave-one-source-out: train without each source group, score it, tabulate the variants"),
    "export": Command("export.commands", "add_export_arguments", "run_export",
                      "export a checkpoint to ONNX (fp32, int8 when it passes), verify it, write model.json"),
    "verify": Command("export.commands", "add_verify_arguments", "run_verify",
                      "re-verify an export folder against its checkpoint"),
    "predict": Command("runtime.predictor", "add_arguments", "run",
                       "classify PNG, JPEG or DICOM files with an exported model (onnxruntime, no torch)"),
    "pwa": Command("cxr.pipeline", "add_pwa_arguments", "run_pwa", "render the static site (dist/) from an export"),
    "serve": Command("cxr.pipeline", "add_serve_arguments", "run_serve",
                     "serve the built site on 127.0.0.1 with the headers it needs"),
    "release": Command("cxr.release", "add_arguments", "run",
                       "retrain the released model (models/) from the shared data with pinned seeds"),
    "api": Command("cxr.pipeline", "add_api_arguments", "api.commands:run",
                   "the REST API for an exported model (POST /v1/predict, ...; onnxruntime, no torch)"),
    "upgrade-checkpoint": Command("training.model.checkpoint", "add_arguments", "run",
                                  "convert a checkpoint of an earlier version to the current format"),
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, except flags and options without one."""

    def _get_help_string(self, action):
        text = action.help or ""
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if action.default not in (None, argparse.SUPPRESS, [], "") and not flag and "%(default)" not in text:
            text = f"{text} (default: %(default)s)".strip()
        return text


def _function(module: str, name: str):
    if ":" in name:
        module, name = name.split(":")
    return getattr(importlib.import_module(module), name)


def parser_for(command: str | None) -> argparse.ArgumentParser:
    """The whole parser; only `command`'s options are added (importing its module), the others are listed."""
    parser = argparse.ArgumentParser(prog="cxr", description=__doc__.split("\n\n")[0], formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, formatter_class=_Formatter)
        if name == command:
            _function(cmd.module, cmd.arguments)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = parser_for(command).parse_args(argv)
    cmd = COMMANDS[args.command]
    return int(_function(cmd.module, cmd.run)(args) or 0)
