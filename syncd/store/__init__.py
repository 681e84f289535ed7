"""The mirror database: the only package in syncd that writes SQL or imports peewee.

``Store`` is the synchronous store, ``AsyncStore`` the asyncio facade implementing
``syncd.seams.MirrorStore``; ``readonly`` answers ``syncd sql`` and ``syncd report``.
"""

from syncd.store.asyncstore import AsyncStore
from syncd.store.mirror import Store, open_store
from syncd.store.readonly import ReadOnlyMirror, run_readonly_query

__all__ = ["AsyncStore", "ReadOnlyMirror", "Store", "open_store", "run_readonly_query"]
