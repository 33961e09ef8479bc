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
    REMOVED = "removed"  # the subscriber took the event out of the calendar
    UPDATED = "updated"  # the sent event was corrected everywhere (a correction job, or Rokt says so)
    CANCELLED = "cancelled"  # the event was deleted everywhere, or not sent: its template was cancelled
    WITHDRAWN = "withdrawn"  # we removed the event from the contact's subscription (`events remove`)


TERMINAL_STATES = frozenset(State) - {State.QUEUED}
# Terminal states whose record leaves Redis once the history store holds it: nothing waits on
# them. `accepted` waits for Rokt's confirmation (and maybe a release), `failed` for a replay.
ARCHIVED_STATES = frozenset(
    {
        State.CONFIRMED,
        State.NO_SUBSCRIPTION,
        State.MISSING_FIELD,
        State.REMOVED,
        State.UPDATED,
        State.CANCELLED,
        State.WITHDRAWN,
    }
)
# States whose event Rokt holds in the contact's calendar: what a correction updates, a cancel
# deletes and a withdrawal removes.
HELD_STATES = frozenset({State.ACCEPTED, State.CONFIRMED, State.UPDATED})

# Every allowed state change, written once: a state and the states it may move to. The ledger
# refuses any other move (`pipeline.stores.ledger.IllegalTransition`); a caller may narrow a move to
# fewer from-states, never widen it. A state without a next state is final.
# An event held (accepted, confirmed, updated) may be corrected (updated again), cancelled
# (deleted everywhere), withdrawn (removed from the contact's subscription) or removed by the
# subscriber; a queued one ends `cancelled` when its template was cancelled before it was sent.
_AFTER_SENDING = frozenset({State.UPDATED, State.CANCELLED, State.WITHDRAWN, State.REMOVED})
NEXT_STATES: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset(
        {State.ACCEPTED, State.NO_SUBSCRIPTION, State.MISSING_FIELD, State.FAILED, State.CANCELLED}
    ),
    # webhooks confirm or remove; reconciliation fails an event Rokt never confirmed
    State.ACCEPTED: frozenset({State.CONFIRMED, State.FAILED}) | _AFTER_SENDING,
    State.CONFIRMED: _AFTER_SENDING,
    State.UPDATED: _AFTER_SENDING,  # corrected again, cancelled, withdrawn or removed
    State.FAILED: frozenset({State.QUEUED}),  # a replay sends it through the pipeline again
    State.NO_SUBSCRIPTION: frozenset(),
    State.MISSING_FIELD: frozenset(),
    # removed by the subscriber from one calendar: the event may still be in the contact's other
    # subscriptions, so a cancel or a withdrawal still reaches it
    State.REMOVED: frozenset({State.CANCELLED, State.WITHDRAWN}),
    State.CANCELLED: frozenset(),
    State.WITHDRAWN: frozenset(),
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
    UPDATE_EVENT = "update_event"  # Rokt refused a correction of a sent event (update everywhere)
    DELETE_EVENT = "delete_event"  # Rokt refused a cancel of a sent event (delete everywhere)
    REMOVE_EVENT = "remove_event"  # Rokt refused a withdrawal (remove from one subscription)
    RECORD_PERFORMANCE = "record_performance"  # SFMC refused a day's performance rows


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


class JobKind(StrEnum):
    """What an event job does to events already sent (pipeline/journeys/event_jobs.py)."""

    CORRECT = "correct"  # update everywhere, where the re-rendered content differs
    CANCEL = "cancel"  # delete everywhere; a template's cancel also archives the template
    WITHDRAW = "withdraw"  # remove one contact's events from their subscriptions


# The stage a failed item of each kind of job is dead-lettered under.
JOB_STAGES: dict[JobKind, Stage] = {
    JobKind.CORRECT: Stage.UPDATE_EVENT,
    JobKind.CANCEL: Stage.DELETE_EVENT,
    JobKind.WITHDRAW: Stage.REMOVE_EVENT,
}


class JobState(StrEnum):
    """Where an event job is (the job scripts spell `done` out)."""

    PLANNING = "planning"  # its first look at the scope is still to come
    RUNNING = "running"
    DONE = "done"  # its last look found nothing more: its working lists are gone


class JobOutcome(StrEnum):
    """What an event job did with one execution: each is counted once per job."""

    UPDATED = "updated"  # the event now shows the new content
    UNCHANGED = "unchanged"  # the new content renders the same: nothing sent
    KEPT = "kept"  # the contact's values no longer render: the old event stays (reason kept)
    ENDED = "ended"  # the event's end is past: not updated
    NOT_HELD = "not_held"  # Rokt holds no event of it any more (removed, cancelled, failed...)
    GONE = "gone"  # its record is past the ledger's retention
    CANCELLED = "cancelled"  # deleted everywhere
    WITHDRAWN = "withdrawn"  # removed from the contact's subscriptions
    FAILED = "failed"  # Rokt refused: a dead letter holds why, replayable


# outcomes that count as skipped (the progress's "skipped by reason")
SKIPPED_OUTCOMES = frozenset({JobOutcome.KEPT, JobOutcome.ENDED, JobOutcome.NOT_HELD, JobOutcome.GONE})
