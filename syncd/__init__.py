"""syncd: a local, queryable SQLite mirror of a Timetracker account."""

__version__ = "0.1.0"
