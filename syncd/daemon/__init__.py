"""The long-running service and what only it needs: the daemon's lifecycle (``runner``), its
scheduler and plan, the webhook receiver, subscription upkeep, metrics and systemd notify.

``syncd --once`` and the offline commands never import this package.
"""
