"""The top of the project: the `cxr` command line (one subcommand per stage) and the build pipeline that runs the
stages in order. Nothing below imports it."""
