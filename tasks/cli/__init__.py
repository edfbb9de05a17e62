"""The command line: one module per command, `main` the group and shared options."""
