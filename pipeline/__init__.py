"""rokt-sfmc: the Rokt Calendar <-> Salesforce Marketing Cloud integration backend.

The product's rooms, lowest layer first. A module imports only from its own layer or lower ones
(`tests/unit/test_imports.py`); the layout (`make docs`, docs/layout.md) lists them in this order.
The sandbox (`pipeline/sandbox/`) stands outside: it may import anything, and nothing imports it.
"""

LAYERS: tuple[tuple[str, ...], ...] = (
    ("vocabulary", "settings"),  # the words and the settings
    ("infra",),  # Redis, the broker, queues, logging, sealed secrets
    ("clients",),  # talking to Rokt and SFMC
    ("stores",),  # the Redis structures with guarded moves
    ("tenancy",),  # tenants, API keys, each process's per-tenant handles
    ("journeys", "subscriptions", "delivery"),  # the two flows and their delivery: peers
    ("upkeep",),  # re-drives, replays, retention
    ("ops",),  # what operators watch
    ("web", "cli"),  # the entry points (with tasks/ and celeryconfig outside the package)
)
