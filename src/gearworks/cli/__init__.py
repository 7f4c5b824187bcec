"""The ``gearworks`` command line: one entry point with a subcommand per task."""
