"""Subcommands of the `hf-rfdetr` command, one module each.

A module here defines `register(subparsers)`, which adds its parser and sets `run_command` (a function taking the
parsed arguments and returning the exit code), and `ORDER`, its place in `hf-rfdetr --help`. `hf_rfdetr.cli` finds
the modules itself, so adding a command is adding a module.
"""
