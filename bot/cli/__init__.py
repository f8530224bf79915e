"""Command-line subcommands, one module per area, attached to the group in ``bot.__main__``."""
