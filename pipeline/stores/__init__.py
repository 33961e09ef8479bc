"""Where the flows keep their state: in Redis, what is in flight, each structure with its guarded
moves (the execution ledger, outboxes, the rate limiter, dead letters waiting for a replay); in the
SQL history store, what is done (finished executions, subscriptions, webhook receipts, replayed
dead letters).
"""
