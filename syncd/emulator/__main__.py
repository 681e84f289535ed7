"""``python -m syncd.emulator``."""

from .command import emulator_command

if __name__ == "__main__":
    emulator_command(prog_name="python -m syncd.emulator")
