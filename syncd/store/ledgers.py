"""Which budget ledger a database gets: :func:`ledger_for` picks it by the database's type."""

from __future__ import annotations

from typing import Protocol

from peewee import Database

from syncd.budget_ledger import BudgetLedger
from syncd.store.backend import POSTGRESQL, backend_name
from syncd.store.budget import SqliteBudgetLedger
from syncd.store.budget_pg import PostgresBudgetLedger


class HasDatabase(Protocol):
    """A store: anything holding its peewee database as ``db``."""

    @property
    def db(self) -> Database: ...


def ledger_for(db: Database, key_id: str) -> BudgetLedger:
    """The rate budget's ledger of ``key_id`` in ``db`` (nothing is read yet):
    ``PostgresBudgetLedger`` on PostgreSQL, ``SqliteBudgetLedger`` on SQLite.

    Raises ``StoreError`` for any other kind of database.
    """
    if backend_name(db) == POSTGRESQL:
        return PostgresBudgetLedger(db, key_id)
    return SqliteBudgetLedger(db, key_id)


def budget_ledger(store: HasDatabase, key_id: str) -> BudgetLedger:
    """The rate budget's ledger of ``key_id`` in the mirror ``store``'s database (nothing is
    read yet). Raises ``StoreError`` for a database that is neither SQLite nor PostgreSQL."""
    return ledger_for(store.db, key_id)
