"""The command line's consoles: wide enough in a log or a pipe that tables are not cut to ellipses."""

from __future__ import annotations

import io

from rich.table import Table

from ichvol.console import LOG_WIDTH, output_console


def _table_text(console) -> str:
    table = Table()
    for header in ("group", "cases", "DSC %", "IoU %", "precision %", "recall %", "model MAE ml", "ABC/2 MAE ml",
                   "ABC/2 Kothari MAE ml", "improvement vs ABC/2 %", "s/case"):
        table.add_column(header)
    table.add_row("IPH+IVH+mixed", "28", "88.41", "82.07", "90.13", "91.52", "0.454", "2.592", "1.812", "80.7", "1.6")
    console.file = io.StringIO()
    console.print(table)
    return console.file.getvalue()


def test_a_pipe_gets_the_log_width_and_whole_cells(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())  # not a terminal
    console = output_console()
    assert console.width == LOG_WIDTH
    text = _table_text(console)
    assert "IPH+IVH+mixed" in text and "ABC/2 Kothari MAE ml" in text and "…" not in text


def test_columns_still_decides(monkeypatch):
    monkeypatch.setenv("COLUMNS", "70")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert output_console().width == 70
    assert "…" in _table_text(output_console())
