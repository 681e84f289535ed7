"""Command line entry point (placeholder until the full CLI lands)."""

import click


@click.group()
def cli() -> None:
    """syncd: mirror a Timetracker account into SQLite."""


@cli.command(
    "emulator",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.pass_context
def emulator(ctx: click.Context) -> None:
    """Run the bundled Timetracker emulator (see docs/emulator.md)."""
    from syncd.emulator.command import emulator_command

    emulator_command.main(args=ctx.args, prog_name="syncd emulator", standalone_mode=True)


def main() -> None:
    cli()
