"""Infrastructure every flow stands on: Redis clients and key names, the Celery broker, queues and
dispatch, replica waits, logging, sealed secrets.
"""
