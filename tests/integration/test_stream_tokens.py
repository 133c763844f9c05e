"""Product-signed stream tokens on the ws handshake, and service tokens on the API (docs/protocol.md,
"Product-signed tokens"): each refusal with the contract's close code or status."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from channels.db import database_sync_to_async
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import Client

from jobcast.accounts.models import ApiToken, SubjectUser
from jobcast.accounts.services import token_create, user_for_subject
from jobcast.jobs.models import Job
from jobcast.ws.limits import connections
from jobcast.ws.resync import close_revoked
from tests.integration.test_consumers import bearer, closed_with, connect, events_until_close, finish_job, make_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

SECRET = "a-shared-secret-of-the-product-and-jobcast-0123456789"


@pytest.fixture(autouse=True)
def hs256(settings):
    settings.JOBCAST = {**settings.JOBCAST, "JWT_SECRET": SECRET}
    yield
    connections.total = 0
    connections.per_user.clear()
    connections.consumers.clear()


def signed(sub="42", *, key=SECRET, algorithm="HS256", lifetime=60, **claims) -> str:
    payload = {"sub": sub, "aud": "jobcast", "exp": int(time.time()) + lifetime, "iat": int(time.time()), **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=algorithm)


async def job_of(sub: str, **fields) -> Job:
    user = await database_sync_to_async(user_for_subject)(sub)
    return await make_job(user, **fields)


async def close_code(path: str, headers=()) -> int:
    return await closed_with(await connect(path, headers))


async def test_a_valid_token_opens_its_users_job_stream(redis):
    job = await job_of("42", state="running")
    ws = await connect(f"/ws/jobs/{job.id}/?token={signed('42', jobs=[str(job.id)])}")
    snapshot = (await ws.receive_json_from(timeout=10))
    assert snapshot["type"] == "snapshot" and snapshot["job"]["id"] == str(job.id)
    await finish_job(job)
    messages, code = await events_until_close(ws)
    assert code == 1000 and messages[-1]["state"] == "succeeded"


@pytest.mark.parametrize("case", ["expired", "wrong signature", "wrong audience", "no expiry", "wrong issuer",
                                  "none algorithm", "garbage"])
async def test_bad_tokens_are_refused_with_4401(case, settings):
    job = await job_of("42")
    token = {
        "expired": lambda: signed("42", lifetime=-30),  # past the 5 s leeway
        "wrong signature": lambda: signed("42", key="another-secret-entirely-0123456789-abcdef"),
        "wrong audience": lambda: signed("42", aud="someone-else"),
        "no expiry": lambda: jwt.encode({"sub": "42", "aud": "jobcast"}, SECRET, algorithm="HS256"),
        "wrong issuer": lambda: signed("42", iss="https://evil.example"),
        "none algorithm": lambda: jwt.encode({"sub": "42", "aud": "jobcast", "exp": int(time.time()) + 60}, None,
                                             algorithm="none"),
        "garbage": lambda: "not.a.jwt",
    }[case]()
    if case == "wrong issuer":
        settings.JOBCAST = {**settings.JOBCAST, "JWT_ISSUER": "https://shop.example"}
    assert await close_code(f"/ws/jobs/{job.id}/?token={token}") == 4401


async def test_without_a_configured_key_no_token_is_accepted(settings):
    job = await job_of("42")
    settings.JOBCAST = {**settings.JOBCAST, "JWT_SECRET": ""}
    assert await close_code(f"/ws/jobs/{job.id}/?token={signed('42')}") == 4401


async def test_another_users_job_and_a_job_the_token_does_not_name_are_4404():
    mine, theirs, other_kind = await job_of("42"), await job_of("43"), await job_of("42")
    await database_sync_to_async(Job.objects.filter(id=other_kind.id).update)(kind="files.checksum")
    assert await close_code(f"/ws/jobs/{theirs.id}/?token={signed('42')}") == 4404  # another user's
    scoped = signed("42", jobs=[str(uuid.uuid4())])
    assert await close_code(f"/ws/jobs/{mine.id}/?token={scoped}") == 4404  # not named by the token
    assert await close_code(f"/ws/jobs/{other_kind.id}/?token={signed('42', kinds=['demo.count'])}") == 4404
    ws = await connect(f"/ws/jobs/{mine.id}/?token={signed('42', kinds=['demo.count'])}")
    assert (await ws.receive_json_from(timeout=10))["type"] == "snapshot"
    await ws.disconnect()
    # A scoped token does not open the user's all-jobs stream; an unscoped one does; staff's never.
    assert await close_code(f"/ws/jobs/?token={signed('42', jobs=[str(mine.id)])}") == 4403
    assert await close_code(f"/ws/jobs/?all=1&token={signed('42')}") == 4403
    ws = await connect(f"/ws/jobs/?token={signed('42')}")
    assert {(await ws.receive_json_from(timeout=10))["job"]["id"] for _ in range(2)} == {str(mine.id), str(other_kind.id)}
    await ws.disconnect()


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_public_key_tokens(algorithm, settings):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "RS256" \
        else ec.generate_private_key(ec.SECP256R1())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    settings.JOBCAST = {**settings.JOBCAST, "JWT_SECRET": "", "JWT_PUBLIC_KEY": public_pem}
    job = await job_of("7")
    ws = await connect(f"/ws/jobs/{job.id}/?token={signed('7', key=private, algorithm=algorithm)}")
    assert (await ws.receive_json_from(timeout=10))["type"] == "snapshot"
    await ws.disconnect()
    # The public key is no HMAC secret: a token signed with it as one is refused.
    forged = jwt.encode({"sub": "7", "aud": "jobcast", "exp": int(time.time()) + 60}, "x" * 64, algorithm="HS256")
    assert await close_code(f"/ws/jobs/{job.id}/?token={forged}") == 4401
    other = ec.generate_private_key(ec.SECP256R1()) if algorithm == "ES256" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert await close_code(f"/ws/jobs/{job.id}/?token={signed('7', key=other, algorithm=algorithm)}") == 4401


async def test_an_open_socket_is_closed_when_its_token_expires():
    job = await job_of("42", state="running")
    ws = await connect(f"/ws/jobs/{job.id}/?token={signed('42', lifetime=2)}")
    assert (await ws.receive_json_from(timeout=10))["type"] == "snapshot"
    assert await close_revoked() == 0
    time.sleep(2.1)
    assert await close_revoked() == 1
    assert await closed_with(ws) == 4401


def test_a_subject_maps_to_one_user_made_on_first_use(django_user_model):
    django_user_model.objects.create_user(username="sub-42")  # a local user whose name looks like it
    first = user_for_subject("42")
    assert user_for_subject("42") == first and first.username != "sub-42" and not first.is_staff
    assert not first.has_usable_password()
    assert SubjectUser.objects.get(subject="42").user == first
    assert user_for_subject("x" * 255).username.startswith("sub-")


def test_a_service_token_only_submits_on_a_users_behalf(redis, user):
    service = Client(HTTP_AUTHORIZATION=f"Bearer {token_create('shop-backend', create_user=True, service=True)}")
    body = {"kind": "demo.count", "params": {"steps": 3}}
    made = service.post("/api/jobs/", body, content_type="application/json", HTTP_JOBCAST_SUBJECT="42")
    assert made.status_code == 201, made.content
    job = Job.objects.get(id=made.json()["id"])
    assert job.owner == user_for_subject("42") and job.owner.username != "shop-backend"
    missing = service.post("/api/jobs/", body, content_type="application/json")
    assert missing.status_code == 400 and missing.json()["errors"][0]["loc"] == ["header", "Jobcast-Subject"]
    for method, path in [("get", "/api/jobs/"), ("get", f"/api/jobs/{job.id}/"), ("post", f"/api/jobs/{job.id}/cancel/"),
                         ("post", "/api/ws-tickets/"), ("get", "/api/kinds/")]:
        answer = getattr(service, method)(path, HTTP_JOBCAST_SUBJECT="42")
        assert answer.status_code == 403, (path, answer.content)
    # An ordinary token's Jobcast-Subject changes nothing: it submits as its own user.
    own = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user.username)}")
    mine = own.post("/api/jobs/", body, content_type="application/json", HTTP_JOBCAST_SUBJECT="42")
    assert Job.objects.get(id=mine.json()["id"]).owner == user
    assert ApiToken.objects.filter(service=True).count() == 1


async def test_a_service_token_opens_no_socket():
    raw = await database_sync_to_async(token_create)("shop-backend", create_user=True, service=True)
    job = await job_of("42")
    assert await close_code(f"/ws/jobs/{job.id}/", bearer(raw)) == 4401
