"""The rich consoles the command line writes to.

Rich lays out for 80 columns when it writes to a file or a pipe (a service log, CI), and cuts every table
column to an ellipsis to fit: an evaluation table then shows "88.…" for each figure. A console that is not a
terminal gets `LOG_WIDTH` columns instead, unless COLUMNS says otherwise.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table

LOG_WIDTH = 160


def output_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=LOG_WIDTH if wide else None)


def figures_table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    """The rows under `header`: the first column (the row's name) left-aligned, the figures right-aligned."""
    table = Table(title=title)
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right")
    for cells in rows:
        table.add_row(*cells)
    return table
