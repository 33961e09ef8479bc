"""The webhook flow: Rokt webhooks, subscription rows and contact matching, the data extensions, the
backfill.
"""
