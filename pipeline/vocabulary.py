"""The pipeline's words, written once: execution states, stages, error classes, outbox kinds.

They are `StrEnum`s, so each member is the very string stored in Redis, in dead letters and in
status rows, and accepted by the CLI's filters. The ledger's Lua scripts spell a few of these
states out ('queued', 'accepted', 'failed'); a test checks they still match.
"""

from __future__ import annotations

from enum import StrEnum

# One DNS label as Marketing Cloud names its hosts (a tenant subdomain `tssd`, a stack `s4`): what
# may become part of a host name we call or allow to frame us (fullmatch).
DNS_LABEL = r"[a-z0-9-]{1,63}"


class State(StrEnum):
    """Where an execution is. Every state but `queued` is terminal for the pipeline's tasks;
    webhooks and reconciliation may still move `accepted` on (confirmed, removed, failed)."""

    QUEUED = "queued"
    ACCEPTED = "accepted"
    CONFIRMED = "confirmed"
    NO_SUBSCRIPTION = "no_subscription"
    MISSING_FIELD = "missing_field"
    FAILED = "failed"
    REMOVED = "removed"  # the subscriber (or Rokt) took the event out of the calendar


TERMINAL_STATES = frozenset(State) - {State.QUEUED}
# Terminal states whose record leaves Redis once the history store holds it: nothing waits on
# them. `accepted` waits for Rokt's confirmation (and maybe a release), `failed` for a replay.
ARCHIVED_STATES = frozenset({State.CONFIRMED, State.NO_SUBSCRIPTION, State.MISSING_FIELD, State.REMOVED})

# Every allowed state change, written once: a state and the states it may move to. The ledger
# refuses any other move (`pipeline.stores.ledger.IllegalTransition`); a caller may narrow a move to
# fewer from-states, never widen it. A state without a next state is final.
NEXT_STATES: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.ACCEPTED, State.NO_SUBSCRIPTION, State.MISSING_FIELD, State.FAILED}),
    # webhooks confirm or remove; reconciliation fails an event Rokt never confirmed
    State.ACCEPTED: frozenset({State.CONFIRMED, State.REMOVED, State.FAILED}),
    State.CONFIRMED: frozenset({State.REMOVED}),  # the subscriber took it out of the calendar
    State.FAILED: frozenset({State.QUEUED}),  # a replay sends it through the pipeline again
    State.NO_SUBSCRIPTION: frozenset(),
    State.MISSING_FIELD: frozenset(),
    State.REMOVED: frozenset(),
}


def states_leading_to(state: State) -> tuple[State, ...]:
    """The states the table lets move to `state`."""
    return tuple(s for s, after in NEXT_STATES.items() if state in after)


class Stage(StrEnum):
    """Where something failed for good: each dead letter names its stage, and a replay is
    dispatched on it (`pipeline.upkeep.replay.REPLAYERS` has one handler per member)."""

    RENDER = "render"  # template missing or the event cannot be built
    CREATE_EVENT = "create_event"  # Rokt refused the event, or retries ran out
    PIPELINE = "pipeline"  # an execution task died of an unexpected error
    CONFIRM = "confirm"  # Rokt never confirmed an accepted event (reconciliation)
    RECORD_STATUS = "record_status"  # SFMC refused a status row
    RECORD_SUBSCRIPTION = "record_subscription"  # SFMC refused a subscription row
    RELEASE = "release"  # SFMC refused a Journey Builder release
    RECORD_HISTORY = "record_history"  # the history store refused an execution's row
    RECORD_SUBSCRIPTION_HISTORY = "record_subscription_history"  # the store refused a subscription's row
    WEBHOOK = "webhook"  # a Rokt webhook could not be applied
    MATCH_CONTACT = "match_contact"  # SFMC refused to create the subscriber's contact


class ErrorClass(StrEnum):
    """Why: the vendor clients' error classes, plus the pipeline's own. A dead letter of an
    unexpected exception carries the exception's class name instead."""

    CLIENT_ERROR = "client_error"
    RETRYABLE = "retryable"
    UNKNOWN_OUTCOME = "unknown_outcome"
    THROTTLED = "throttled"
    UNAUTHORIZED = "unauthorized"
    PERMANENT = "permanent"
    UNCONFIRMED = "unconfirmed"


class TenantStatus(StrEnum):
    """Where a brand is: `pending` from its first sign-in until App Settings hold what the
    pipeline needs, then `active`; `disabled` by an operator (executes answer 503, queued work
    waits in its queues, nothing is dropped)."""

    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"


class SfmcAuthMode(StrEnum):
    """How background work gets an SFMC token for a tenant."""

    CLIENT_CREDENTIALS = "client_credentials"  # a server-to-server package's client id/secret
    REFRESH_TOKEN = "refresh_token"  # the offline refresh token of an admin's sign-in


class OutboxKind(StrEnum):
    """The buffered writes, one Redis stream per tenant and kind: SFMC's, and the history store's."""

    STATUS_ROWS = "status"  # execution status rows -> the status data extension
    SUBSCRIPTION_ROWS = "subscription"  # Calendar Subscription rows -> the subscription DE
    RELEASES = "release"  # Journey Builder releases -> /interaction/v1/async/events
    HISTORY = "history"  # executions that reached a terminal state -> the history store
    SUBSCRIPTION_HISTORY = "subscription-history"  # merged subscriptions, webhook receipts -> the store


# The stage a rejected item of each outbox is dead-lettered under.
OUTBOX_STAGES: dict[OutboxKind, Stage] = {
    OutboxKind.STATUS_ROWS: Stage.RECORD_STATUS,
    OutboxKind.SUBSCRIPTION_ROWS: Stage.RECORD_SUBSCRIPTION,
    OutboxKind.RELEASES: Stage.RELEASE,
    OutboxKind.HISTORY: Stage.RECORD_HISTORY,
    OutboxKind.SUBSCRIPTION_HISTORY: Stage.RECORD_SUBSCRIPTION_HISTORY,
}
