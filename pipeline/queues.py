"""Queue and task names: stable strings shared by the dispatcher, the tasks and celeryconfig."""

RENDER_QUEUE = "render"
ROKT_QUEUE = "rokt"
SFMC_QUEUE = "sfmc"
CALLBACKS_QUEUE = "callbacks"
WEBHOOKS_QUEUE = "webhooks"
ALL_QUEUES = (RENDER_QUEUE, ROKT_QUEUE, SFMC_QUEUE, CALLBACKS_QUEUE, WEBHOOKS_QUEUE)

RENDER_TASK = "rsf.render_event"
CREATE_EVENT_TASK = "rsf.create_rokt_event"
FLUSH_STATUS_TASK = "rsf.flush_status_rows"
FLUSH_SUBSCRIPTIONS_TASK = "rsf.flush_subscription_rows"
WEBHOOK_TASK = "rsf.process_webhook"
RECONCILE_TASK = "rsf.reconcile"
FLUSH_RELEASES_TASK = "rsf.flush_releases"
FLUSH_ALL_TASK = "rsf.flush_all"
