"""Kept for tests that still import ``emulator_process`` from here; it lives in
:mod:`tests.support.emulator`."""

from tests.support.emulator import emulator_process

__all__ = ["emulator_process"]
