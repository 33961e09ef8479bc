"""The Redis structures the flows write through, each with its guarded moves: the execution ledger,
outboxes, the rate limiter, dead letters.
"""
