"""The `ichvol` command line. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import logging
import sys

import typer

from ..console import output_console
from ..errors import IchvolError
from . import encode_cmd, model_cmd, service_cmd, synth_cmd

app = typer.Typer(
    name="ichvol",
    help="Intracranial hemorrhage segmentation and volumetry on head CT, integrated with PACS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (synth_cmd, encode_cmd, model_cmd, service_cmd):
    module.register(app)

err_console = output_console(stderr=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines say nothing an operator needs
    try:
        app()
    except IchvolError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
