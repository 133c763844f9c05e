"""The HTTP API under /api/, on django-ninja (docs/protocol.md, "HTTP API").

Views parse, call a service or selector, render. Every error goes through one handler
that renders the contract's `{"detail", "errors"}` body; nothing else reaches the client.
"""

from __future__ import annotations

import logging

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from ninja import NinjaAPI, Query, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.renderers import BaseRenderer
from ninja.security import HttpBearer, SessionAuth
from pydantic import BaseModel, Field, model_validator

from jobcast.accounts.services import ticket_create, token_lookup, user_for_subject
from jobcast.errors import DEPENDENCY_DOWN, ApiError, NotFound, error_response, unavailable_response
from jobcast.events.history import read_history
from jobcast.jobs.documents import job_document, job_documents
from jobcast.jobs.registry import all_kinds
from jobcast.jobs.selectors import job_get_for_user, job_list_for_user
from jobcast.jobs.services import job_cancel, job_submit
from jobcast.jobs.states import State
from jobcast.redis_client import get_redis
from jobcast.events.schema import ErrorOut, EventsOut, JobDocument, JobPage, KindOut, TicketOut
from jobcast.web.schemas import SubmitIn

logger = logging.getLogger(__name__)


SUBJECT_HEADER = "Jobcast-Subject"  # a service token's submission names the product's user by its `sub`


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>` with a token from `jobcast token`.

    A service token (`jobcast token NAME --service`) opens one route only, `POST /api/jobs/` with a
    Jobcast-Subject header, and submits as the user that `sub` maps to (docs/protocol.md).
    """

    def authenticate(self, request, token):
        api_token = token_lookup(token)
        if api_token is None:
            return None
        if api_token.service:
            return self.on_behalf(request, api_token)
        request.user, request.api_token = api_token.user, api_token
        return api_token.user

    @staticmethod
    def on_behalf(request, api_token):
        match = getattr(request, "resolver_match", None)
        if request.method != "POST" or match is None or match.url_name != "submit_job":
            raise ApiError(403, "A service token may only submit jobs (POST /api/jobs/ with a Jobcast-Subject header).")
        subject = request.headers.get(SUBJECT_HEADER, "")
        if not 1 <= len(subject) <= 255:
            raise ApiError(400, f"A service token submits on behalf of a user: send the {SUBJECT_HEADER} header.",
                           [{"loc": ["header", SUBJECT_HEADER], "msg": "1 to 255 characters"}])
        request.api_token = api_token
        return user_for_subject(subject)


class LoggedInSession(SessionAuth):
    """A Django session; its CSRF check applies only to a logged-in session.

    Without this, a request whose Bearer token was refused would fall through to the
    session check and get 403 (CSRF) instead of the contract's 401.
    """

    def __call__(self, request):
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request, data, *, response_status):
        return orjson.dumps(data, default=_default)


def _default(value):
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class InvalidJson(ValueError):
    """A request body that is not JSON (ninja wraps it in HttpError(400) `from` this)."""


class OrjsonParser(Parser):
    """Strict JSON bodies (no NaN/Infinity, no lone surrogates, integers within 64 bits)."""

    def parse_body(self, request):
        try:
            return orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise InvalidJson(str(exc)) from None


class JobcastApi(NinjaAPI):
    """NinjaAPI whose OpenAPI document says that an optional query parameter may be given empty
    (`?state=`), which counts as not given (_QueryModel): `allowEmptyValue` on each."""

    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        for operations in schema["paths"].values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "query" and not parameter["required"]:
                        parameter["allowEmptyValue"] = True
        return schema


api = JobcastApi(
    title="jobcast",
    version="1",
    description="Background jobs with live progress. WebSocket protocol: docs/protocol.md.",
    auth=[BearerToken(), LoggedInSession()],
    openapi_url="/schema/",
    docs_url="/docs/",
    renderer=OrjsonRenderer(),
    parser=OrjsonParser(),
    urls_namespace="jobcast-api",  # its own: a product may have a NinjaAPI of its own
)

ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 429: ErrorOut}


@api.exception_handler(ApiError)
def on_api_error(request, exc: ApiError):
    return exc.response()


def _loc(loc) -> list:
    """ninja puts the body parameter's name after "body" (["body", "body", "kind"]); a loc names
    the field in the request body instead (["body", "kind"]), as the kinds' params errors do."""
    loc = list(loc)
    if loc[:2] == ["body", "body"]:
        del loc[1]
    return loc


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    errors = [{"loc": _loc(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors]
    return error_response(400, "Invalid request.", errors)


@api.exception_handler(AuthenticationError)
def on_auth_error(request, exc):
    return error_response(401, "Authentication required: a session or an 'Authorization: Bearer <token>' header.")


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    if isinstance(exc.__cause__, InvalidJson):
        errors = [{"loc": ["body"], "msg": str(exc.__cause__), "type": "json_invalid"}]
        return error_response(400, "The request body is not valid JSON.", errors)
    return error_response(exc.status_code, str(exc))


@api.exception_handler(Http404)
def on_404(request, exc):
    return error_response(404, "Not found.")


@api.exception_handler(RequestDataTooBig)
def on_too_big(request, exc):
    return error_response(413, "Request body too large.")


def on_dependency_down(request, exc):
    logger.warning("%s %s: a dependency is unavailable: %s", request.method, request.path, type(exc).__name__)
    return unavailable_response(exc)


for _unavailable in DEPENDENCY_DOWN:
    api.add_exception_handler(_unavailable, on_dependency_down)


@api.exception_handler(Exception)
def on_unexpected(request, exc):
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "Internal server error.")


@api.post("/jobs/", response={201: JobDocument, 200: JobDocument, **ERRORS}, summary="Submit a job", url_name="submit_job")
def submit_job(request, body: SubmitIn):
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 255):
        raise ApiError(400, "Invalid Idempotency-Key.", [{"loc": ["header", "Idempotency-Key"], "msg": "1 to 255 characters"}])
    job, created = job_submit(request.auth, body.kind, body.params, idempotency_key=key)
    # A replayed key returns the job as it is now, live state included, like GET does.
    return Status(201, job_document(job)) if created else Status(200, job_documents([job])[0])


class _QueryModel(BaseModel):
    """A query parameter given empty (`?state=&limit=`) counts as not given."""

    @model_validator(mode="before")
    @classmethod
    def _drop_empty(cls, data):
        if isinstance(data, dict):
            return {name: value for name, value in data.items() if value != ""}
        return data


class ListQuery(_QueryModel):
    state: State | None = None  # an enum in the OpenAPI document too
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = None


@api.get("/jobs/", response={200: JobPage, **ERRORS}, summary="List my jobs, newest first")
def list_jobs(request, query: Query[ListQuery]):
    jobs, next_cursor = job_list_for_user(request.auth, state=query.state, limit=query.limit, cursor=query.cursor)
    return {"items": job_documents(jobs), "next": next_cursor}


def _own_job(request, job_id: str):
    job = job_get_for_user(request.auth, job_id)
    if job is None:
        raise NotFound()
    return job


@api.get("/jobs/{job_id}/", response={200: JobDocument, **ERRORS}, summary="One job")
def get_job(request, job_id: str):
    return job_documents([_own_job(request, job_id)])[0]


@api.post("/jobs/{job_id}/cancel/", response={202: JobDocument, **ERRORS}, summary="Cancel a job")
def cancel_job(request, job_id: str):
    job = job_cancel(request.auth, job_id)
    return Status(202, job_documents([job])[0])


class EventsQuery(_QueryModel):
    # At most the largest seq a job can have (a signed 64-bit integer); Redis refuses a
    # stream id above 2**64 - 1 (a 500 before this bound).
    after: int = Field(0, ge=0, le=2**63 - 1)


@api.get("/jobs/{job_id}/events/", response={200: EventsOut, **ERRORS}, summary="A job's stored events")
def job_events(request, job_id: str, query: Query[EventsQuery]):
    job = _own_job(request, job_id)
    history = read_history(get_redis(), job.id, query.after, known_seq=job.seq)
    return {"events": [orjson.loads(event.text) for event in history.events], "complete": history.complete}


@api.get("/kinds/", response={200: list[KindOut], **ERRORS}, summary="Registered job kinds")
def list_kinds(request):
    return [{"name": k.name, "title": k.title, "params_schema": k.params_schema()} for k in all_kinds()]


@api.post("/ws-tickets/", response={201: TicketOut, **ERRORS}, summary="A single-use WebSocket ticket")
def create_ticket(request):
    # A ticket asked for with a token is bound to it: revoking the token closes the socket too.
    api_token = getattr(request, "api_token", None)
    ticket, ttl = ticket_create(request.auth, token_id=api_token.id if api_token else None)
    return Status(201, {"ticket": ticket, "expires_in": ttl})
