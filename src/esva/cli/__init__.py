"""The ``esva`` command line (typer). ``esva --help`` lists the commands."""
