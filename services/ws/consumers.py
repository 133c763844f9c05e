"""WebSocket consumers: one job's events (`/ws/jobs/{id}/`), all of a user's (`/ws/jobs/`), and
every user's for staff (`/ws/jobs/?all=1`).

The delivery rule (docs/protocol.md): join the group first, then read the snapshot or
history, then send live events with seq > the last one sent. Which event to send, skip or
repair from history is jobcast.ws.stream's (no sockets there); this module is the socket
plumbing: handshake, Redis reads, frames out, close codes.
"""

from __future__ import annotations

import logging
from time import perf_counter

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from pydantic import ValidationError

from jobcast.errors import DEPENDENCY_DOWN, ApiError, unavailable_dependency
from jobcast.events.groups import ALL_JOBS_GROUP, LAYER_ALIAS, job_group, user_group
from jobcast.events.history import StoredEvent, read_history_async, read_live_async
from jobcast.events.schema import CancelRequest, CloseCode, ErrorMessage, SnapshotMessage, StaffSnapshotMessage
from jobcast.jobs.documents import job_document
from jobcast.jobs.models import Job
from jobcast.jobs.selectors import job_get_for_user, jobs_active_all, jobs_active_for_user
from jobcast.jobs.services import job_request_cancel
from jobcast.jobs.states import is_terminal
from jobcast.logs import clean_request_id, job_id_var, request_id_var
from jobcast.metrics import (
    DROPPED_DUPLICATE,
    REFUSED_BY_CODE,
    SEND_DURATION,
    SENT_BY_TYPE,
    count_close,
    observe_event_latency,
    prebind_ws,
    ws_group_joins,
    ws_handshakes_refused,
    ws_messages_sent,
)
from jobcast.redis_client import get_async_redis
from jobcast.ws.auth import authenticate, header, query_params
from jobcast.ws.limits import connections
from jobcast.ws.resync import ensure_sweeper
from jobcast.ws.stream import StreamCursor, Verdict

logger = logging.getLogger(__name__)

MAX_BAD_MESSAGES = 5  # after this many unusable client messages the socket is closed (1008)

prebind_ws()  # every close code and refusal reason at 0 in this ws process


def count_refusal(code: int) -> None:
    """Count a refused handshake by its close code."""
    (REFUSED_BY_CODE.get(code) or ws_handshakes_refused.labels(str(code), "other")).inc()


class _JobcastConsumer(AsyncWebsocketConsumer):
    """Shared handshake (auth, limits) and client-message handling."""

    channel_layer_alias = LAYER_ALIAS  # jobcast's layer, beside any layer of a product's own
    groups = []
    user = None
    token_id = None  # the API token the socket was opened with: revoking it closes the socket (4401)
    claims = None  # a product-signed token's claims: the jobs it allows; its expiry closes the socket (4401)
    accepted = False
    admitted = False
    bad_messages = 0
    closed = False  # websocket.close was sent (or the client is gone): nothing more may be sent
    close_code: int | None = None  # the code this side closed with, for jobcast_ws_connections_closed_total

    async def __call__(self, scope, receive, send):
        # This socket's task logs with the handshake's request id (nginx's X-Request-ID) and job.
        request_id_var.set(clean_request_id(header(scope, b"x-request-id")))
        job_id = scope.get("url_route", {}).get("kwargs", {}).get("job_id")
        if job_id:
            job_id_var.set(job_id)
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A consumer that ends without websocket.disconnect (an exception, a cancelled
            # task) still gives back its connection slot and its group memberships.
            await self.release()

    async def dispatch(self, message):
        """Call the message's handler, without Channels' per-message database clean-up.

        Channels 4.2+ runs `close_old_connections` in a worker thread before every message:
        a thread hop per event per socket, on the hot path. This consumer touches the
        database only through `database_sync_to_async`, which does that clean-up itself.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        try:
            await handler(message)
        except DEPENDENCY_DOWN as exc:
            # Nothing can be delivered without Redis, nor a socket admitted without the database:
            # the client comes back (with backoff, resuming with `after`) once it answers again
            # (docs/protocol.md, close codes).
            logger.warning("closing a socket with 1013: %s is unavailable (%s)",
                           unavailable_dependency(exc), type(exc).__name__)
            if not self.accepted:
                await self.accept()
            await self.close(code=CloseCode.OVERLOADED)

    async def job_batch(self, message):
        """Several queued messages at once (jobcast.ws.layer): handled in order."""
        for queued in message["messages"]:
            if self.closed:
                return
            await self.dispatch(queued)

    async def accept(self, subprotocol=None, headers=None):
        self.accepted = True
        await super().accept(subprotocol=subprotocol, headers=headers)

    async def close(self, code=None, reason=None):
        """Close once; the ASGI server raises on anything sent after websocket.close."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code if code is not None else 1000
        try:
            await super().close(code=code, reason=reason)
        except OSError:  # uvicorn's ClientDisconnected: the client is already gone
            pass

    async def refuse(self, code: int) -> None:
        """Accept then close with `code`: a close code only reaches the client after the handshake."""
        count_refusal(code)
        await self.accept()
        await self.close(code=code)

    async def admit(self) -> bool:
        """Authenticate and apply the connection limits; False when the socket was refused."""
        credential = await authenticate(self.scope)
        if credential is None:
            await self.refuse(CloseCode.NOT_AUTHENTICATED)
            return False
        self.user, self.token_id, self.claims = credential
        refusal = connections.refusal(self.user.id)
        if refusal:
            await self.refuse(refusal)
            return False
        connections.open(self, self.user.id)
        self.admitted = True
        return True

    async def join(self, group: str) -> None:
        """Join a group (awaited: the process's SUBSCRIBE is sent before history is read)."""
        await self.channel_layer.group_add(group, self.channel_name)
        ws_group_joins.inc()
        self.groups = [*self.groups, group]
        ensure_sweeper(self.channel_layer)

    async def disconnect(self, code):
        await self.release(code)

    async def release(self, code=None) -> None:
        """Give back the connection slot and leave the groups (once; safe to call again).

        The socket is counted as closed with the code this side closed it with, else the
        client's (`code`), else 1006 (it ended without a close frame).
        """
        if self.admitted:
            connections.close(self, self.user.id)
            self.admitted = False
            count_close(self.close_code or code or 1006)
        groups, self.groups = self.groups, []
        for group in groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # noqa: BLE001 - at worst the process stays subscribed to an empty group
                logger.warning("could not leave %s", group, exc_info=True)

    async def send_error(self, code: str, detail: str) -> None:
        """Tell the client its message was unusable; close after too many."""
        await self.send_text(ErrorMessage(code=code, detail=detail).model_dump_json(), "error")
        self.bad_messages += 1
        if self.bad_messages >= MAX_BAD_MESSAGES:
            await self.close(code=CloseCode.POLICY_VIOLATION)

    async def receive(self, text_data=None, bytes_data=None):
        if self.closed:
            return  # frames that crossed our close on the wire get no answer
        if text_data is None:
            await self.send_error("bad_message", "Send JSON text frames.")
            return
        try:
            CancelRequest.model_validate_json(text_data)
        except ValidationError:
            await self.send_error("bad_message", 'The only message accepted is {"type": "cancel"}.')
            return
        await self.cancel()

    async def cancel(self) -> None:
        await self.send_error("unsupported", "Cancel a job on its own stream, /ws/jobs/{id}/.")

    async def send_text(self, text: str, kind: str) -> None:
        """Send one JSON text frame as published (no re-encoding), counted by message type."""
        if self.closed:
            return
        started = perf_counter()
        try:
            await self.send(text_data=text)
        except OSError:
            # uvicorn's ClientDisconnected: the client went away; its websocket.disconnect follows.
            self.closed = True
            return
        SEND_DURATION.observe(perf_counter() - started)
        (SENT_BY_TYPE.get(kind) or ws_messages_sent.labels(kind)).inc()

    async def send_live(self, message: dict) -> None:
        """Send a live event from the channel layer, timing its way from the publisher."""
        await self.send_text(message["text"], message["event"])
        observe_event_latency(message["ts"])

    async def close_too_slow(self) -> None:
        """The reader fell behind further than can be repaired: it resumes with `after` (counted as a 4408 close)."""
        await self.close(code=CloseCode.TOO_SLOW)


class JobConsumer(_JobcastConsumer):
    """`/ws/jobs/{id}/?after=N`: one job's events, in order, no gap, no duplicate."""

    resumable = True  # the resync sweeper (jobcast.ws.resync) watches this kind of socket
    job: Job | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cursor = StreamCursor()

    async def connect(self):
        if not await self.admit():
            return
        self.job = await database_sync_to_async(job_get_for_user)(self.user, self.scope["url_route"]["kwargs"]["job_id"])
        if self.job is None or (self.claims is not None and not self.claims.allows(self.job)):
            await self.refuse(CloseCode.NOT_FOUND)
            return
        after = query_params(self.scope).get("after")
        # ASCII digits only: str.isdigit() also accepts "²" (int() fails) and other scripts' digits.
        if after is not None and not (after.isascii() and after.isdigit() and len(after) < 19):
            await self.refuse(CloseCode.POLICY_VIOLATION)
            return
        await self.accept()
        await self.join(job_group(self.job.id))
        if after is None:
            await self.send_snapshot(reset=False)
        else:
            await self.replay(int(after))

    async def send_snapshot(self, *, reset: bool) -> None:
        """Send the job's whole current state; live events continue after its seq."""
        live = await read_live_async(get_async_redis(), self.job.id)
        if live is None or is_terminal(self.job.state):
            # Row state is authoritative once terminal or once Redis has nothing.
            self.job = await database_sync_to_async(Job.objects.get)(id=self.job.id)
        document = job_document(self.job, live)
        await self.send_text(SnapshotMessage(job=document, reset=reset).model_dump_json(), "snapshot")
        self.cursor.sent_snapshot(document.seq, document.state)
        await self.close_if_finished()

    async def replay(self, after: int) -> None:
        """Send the stored events after `after`, or a reset snapshot when the client cannot catch up."""
        redis = get_async_redis()
        history = await read_history_async(redis, self.job.id, after, known_seq=self.job.seq)
        live = await read_live_async(redis, self.job.id) if history.complete else None
        plan = self.cursor.replay(after, history, live, self.job.seq, self.job.state)
        if plan.reset:
            await self.send_snapshot(reset=True)
            return
        await self.send_events(plan.events)
        if plan.finish:
            self.cursor.finished = True
        await self.close_if_finished()

    async def send_events(self, events: list[StoredEvent]) -> None:
        """Send the stored events the cursor has not sent yet, in order."""
        for event in self.cursor.unsent(events):
            await self.send_text(event.text, event.type)

    async def close_if_finished(self) -> None:
        if self.cursor.finished:
            await self.close(code=CloseCode.JOB_FINISHED)

    async def job_event(self, message):
        """A live event from the channel layer."""
        if self.closed:
            return
        cursor, seq = self.cursor, message["seq"]
        verdict = cursor.verdict(seq)
        if verdict is Verdict.GAP:
            await self.repair_gap()
            verdict = cursor.verdict(seq)
        if verdict is not Verdict.SEND:
            DROPPED_DUPLICATE.inc()  # sent already (from history, or a repeated message)
            return
        await self.send_live(message)
        cursor.sent(seq, message["terminal"])
        if cursor.finished:
            await self.close(code=CloseCode.JOB_FINISHED)

    async def job_resync(self, message):
        """Events may have been missed (a full queue, a lost pub/sub message): catch up."""
        if not (self.cursor.finished or self.closed):
            await self.repair_gap()

    async def repair_gap(self) -> None:
        """Send the events this socket missed from history; 4408 when they are gone."""
        history = await read_history_async(get_async_redis(), self.job.id, self.cursor.last_seq)
        if not history.complete:
            self.cursor.finished = True
            await self.close_too_slow()
            return
        await self.send_events(history.events)
        await self.close_if_finished()

    async def job_snapshot(self, message):
        """Snapshots for the all-jobs stream; not for this one."""

    async def cancel(self) -> None:
        try:
            await database_sync_to_async(job_request_cancel)(self.job)
        except ApiError as exc:
            code = {404: "not_found", 409: "conflict"}.get(exc.status, "error")
            await self.send_text(ErrorMessage(code=code, detail=exc.detail).model_dump_json(), "error")


class UserJobsConsumer(_JobcastConsumer):
    """`/ws/jobs/`: live events of all the user's jobs; a snapshot per active job on connect.

    With `?all=1` (staff users only, else 4403): every user's jobs, the snapshots carrying
    the owner's username (StaffSnapshotMessage); the group is `jobs.all`.
    """

    async def connect(self):
        if not await self.admit():
            return
        staff_stream = query_params(self.scope).get("all") == "1"
        if (staff_stream and not self.user.is_staff) or (self.claims is not None and self.claims.scoped):
            await self.refuse(CloseCode.FORBIDDEN)
            return
        await self.accept()
        self.last_seqs: dict[str, int] = {}  # per active job: the last seq sent (no replay here)
        if staff_stream:
            await self.join(ALL_JOBS_GROUP)
            jobs = await database_sync_to_async(jobs_active_all)()
        else:
            await self.join(user_group(self.user.id))
            jobs = await database_sync_to_async(jobs_active_for_user)(self.user.id)
        redis = get_async_redis()
        for job in jobs:
            document = job_document(job, await read_live_async(redis, job.id))
            self.last_seqs[document.id] = document.seq
            snapshot = (StaffSnapshotMessage(job=document, owner=job.owner.get_username()) if staff_stream
                        else SnapshotMessage(job=document))
            await self.send_text(snapshot.model_dump_json(), "snapshot")

    async def job_event(self, message):
        job_id = message["job_id"]
        if message["seq"] <= self.last_seqs.get(job_id, 0):
            DROPPED_DUPLICATE.inc()
            return
        await self.send_live(message)
        if message["terminal"]:
            self.last_seqs.pop(job_id, None)
        else:
            self.last_seqs[job_id] = message["seq"]

    async def job_snapshot(self, message):
        """A new job of this user."""
        await self.send_text(message["text"], "snapshot")

    async def job_resync(self, message):
        """This stream has no replay: a reader too slow to keep its queue is closed with 4408."""
        if not self.closed:
            await self.close_too_slow()


class NoSuchEndpoint(AsyncWebsocketConsumer):
    """Any other path under /ws/: refused with 4404."""

    channel_layer_alias = LAYER_ALIAS

    async def connect(self):
        count_refusal(CloseCode.NOT_FOUND)
        await self.accept()
        await self.close(code=CloseCode.NOT_FOUND)
