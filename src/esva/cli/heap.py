"""The garbage collector of a process that exists to run one ``esva`` command."""

from __future__ import annotations

import gc

process_entry = False  # set by esva.cli.main.run(): this interpreter runs one esva command


def settle() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach (``gc.freeze``).

    Called once a command has loaded what it keeps for its whole life (torch's modules, a
    model), and before exit: CPython's full collections otherwise walk those ~190k objects again
    and again (0.39 s of one cold ``esva predict`` on a video, measured with ``gc.callbacks``)
    and once more at interpreter exit (~0.4 s). Garbage made later is collected as usual. Only
    in a process started by ``esva.cli.main.run``: in a test process that calls ``main`` many
    times, freezing would keep earlier tests' garbage cycles for good.
    """
    if process_entry:
        gc.freeze()
