"""The command-line entries of this package: one module per `cxr` command, each with `add_arguments(parser)` and
`run(args)` (cxr/cli.py is the registry)."""
