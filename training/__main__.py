"""`python -m training <command>`: the data and training toolchain."""

import importlib
import sys

COMMANDS = {
    "prepare": ("training.prepare", "read datasets, cache preprocessed images, split by patient"),
    "train": ("training.train", "train a classifier on a prepared folder (resumable), calibrate, fit OOD"),
    "evaluate": ("training.evaluate", "metrics with patient-level CIs per source, plots, Grad-CAM, report"),
    "compare": ("training.compare", "train and evaluate remedy variants under one protocol, tabulate them"),
    "phantoms": ("training.phantoms", "write synthetic chest phantoms with lesion masks"),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m training <command> [options]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:10s} {help_}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
