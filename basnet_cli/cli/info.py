"""`basnet presets`: list the model presets, their size and cost."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from basnet_cli.cli.app import app, console


@app.command("presets")
def presets_command(
    macs: Annotated[bool, typer.Option("--macs", help="Also count GMACs at 288 and 320 "
                                       "(builds each model; a few seconds).")] = False,
) -> None:
    """List model presets: parameters, bundled weights and (with --macs) compute cost."""
    from basnet_cli.model.config import PRESETS, PUBLIC_PRESETS
    from basnet_cli.model.io import bundled_weights

    table = Table(title="BASNet presets")
    table.add_column("preset")
    table.add_column("weights")
    if macs:
        table.add_column("params", justify="right")
        table.add_column("GMACs@288", justify="right")
        table.add_column("GMACs@320", justify="right")
    table.add_column("description")
    for name in PUBLIC_PRESETS:
        config = PRESETS[name]
        w = bundled_weights(name)
        row = [name, "bundled" if w else "-"]
        if macs:
            from basnet_cli.model.flops import count_macs, count_params

            row += [f"{count_params(config) / 1e6:.2f}M",
                    f"{count_macs(config, 288) / 1e9:.2f}",
                    f"{count_macs(config, 320) / 1e9:.2f}"]
        row.append(config.description)
        table.add_row(*row)
    console.print(table)
