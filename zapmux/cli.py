"""The ``zapmux`` command: ``serve`` runs the server; the rest talk to a running one."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from zapmux import __version__
from zapmux.client.commands import register as register_remote_commands

app = typer.Typer(
    help="zapmux: a multi-tenant WhatsApp gateway.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: no "<bool>" beside every flag
)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (ZAPMUX_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (ZAPMUX_PORT / PORT).")] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="Default engine: whatsmeow, sandbox or cloud (ZAPMUX_ENGINE)."),
    ] = None,
) -> None:
    """Start the server."""
    from zapmux.server import run

    overrides = {k: v for k, v in {"host": host, "port": port, "engine": engine}.items() if v}
    sys.exit(run(**overrides))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


register_remote_commands(app)


def main() -> None:
    app()
