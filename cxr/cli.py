"""`cxr COMMAND [options]`: one command line for every stage (`cxr --help` lists them, `cxr COMMAND --help` shows
each one's options with their defaults). `python build.py [options]` is `cxr build [options]`.

A command's module is imported only when that command runs, so `cxr predict`, `cxr serve` and `cxr api` start
without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (its module, one line of help). Each module has `add_arguments(parser)` and `run(args)` and is imported
# only when its command runs.
COMMANDS = {
    "build": ("cxr.commands.build",
              "every stage in order (prepare, train, evaluate, export, pwa), skipping unchanged ones"),
    "prepare": ("training.commands.prepare", "read datasets, cache preprocessed images, split by patient"),
    "phantoms": ("training.commands.phantoms", "write synthetic chest phantoms with lesion masks"),
    "train": ("training.commands.train", "train a classifier on a prepared folder (resumable), calibrate, fit OOD"),
    "evaluate": ("training.commands.evaluate",
                 "metrics with patient-level CIs per source, source probe, plots, Grad-CAM, report"),
    "compare": ("training.commands.compare", "train and evaluate remedy variants under one protocol, tabulate them"),
    "lungs-train": ("training.commands.lungs_train", "train the lung segmenter on the lung masks (split by patient)"),
    "gate-train": ("training.commands.gate_train", "train the chest gate (a frontal chest film?) and measure it"),
    "gate-evaluate": ("training.commands.gate_evaluate", "the chest gate of an export, through the predictor"),
    "lungs-evaluate": ("training.commands.lungs_evaluate",
                       "Dice and IoU of the lung segmenter on held-out masks, fallback rates, contact sheets"),
    "loso": ("training.commands.loso",
             "leave-one-source-out: train without each source group, score it, tabulate the variants"),
    "site-shift-measure": ("training.commands.site_shift_measure",
                           "the site-shift warning's false-alarm and detection rates on held-in and held-out sources"),
    "site-calibration-measure": ("training.commands.site_calibration_measure",
                                 "site calibration from k labelled films of a new site, before and after, over draws"),
    "export": ("export.commands.export",
               "export a checkpoint to ONNX (fp32, int8 when it passes), verify it, write model.json"),
    "verify": ("export.commands.verify", "re-verify an export folder against its checkpoint"),
    "predict": ("runtime.commands.predict",
                "classify PNG, JPEG or DICOM files with an exported model (onnxruntime, no torch)"),
    "validate": ("runtime.commands.validate",
                 "a model on a site's labelled films: metrics with CIs, the site profile that calibrates it"),
    "pwa": ("cxr.commands.pwa", "render the static site (dist/) from an export"),
    "serve": ("cxr.commands.serve", "serve the built site on 127.0.0.1 with the headers it needs"),
    "release": ("cxr.commands.release", "retrain the released model (models/) from the shared data with pinned seeds"),
    "api": ("api.commands", "the REST API for an exported model (POST /v1/predict, ...; onnxruntime, no torch)"),
    "upgrade-checkpoint": ("training.commands.upgrade_checkpoint",
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


def parser_for(command: str | None) -> argparse.ArgumentParser:
    """The whole parser; only `command`'s options are added (importing its module), the others are listed."""
    parser = argparse.ArgumentParser(prog="cxr", description=__doc__.split("\n\n")[0], formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=_Formatter)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = parser_for(command).parse_args(argv)
    return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
