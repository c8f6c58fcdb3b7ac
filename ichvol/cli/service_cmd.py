"""Commands of this group; each helper module adds its commands in register()."""

import typer


def register(app: typer.Typer) -> None:
    pass
