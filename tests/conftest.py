"""Fixtures for every test: a real redis-server, users, tokens and API clients.

Django's settings are loaded before this file (pytest-django), so the session's Redis is
wired in by overriding JOBCAST["REDIS_URL"]: every Redis user in jobcast (the clients, the
publisher, Celery, the channel layer) reads it (jobcast.conf) when it first connects.
"""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests.support import start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on a free port for the whole session."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    from django.conf import settings

    with override_settings(JOBCAST={**settings.JOBCAST, "REDIS_URL": server.url}):
        yield server
    server.stop()


@pytest.fixture(autouse=True)
def redis(redis_server):
    """The sync client on the session's Redis, emptied before each test."""
    from jobcast.redis_client import get_redis

    client = get_redis()
    client.flushdb()
    return client


@pytest.fixture
def user(db, django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password")


@pytest.fixture
def other_user(db, django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-password")


def token_for(user) -> str:
    """A fresh API token for `user`."""
    from jobcast.accounts.services import token_create

    return token_create(user.username)


@pytest.fixture
def token(user):
    return token_for(user)


@pytest.fixture
def api_client(token):
    """A Django test client that sends alice's Bearer token."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def other_client(other_user):
    """A Django test client that sends bob's Bearer token."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {token_for(other_user)}")


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """No persistent connections in tests: threads (database_sync_to_async, job runners) would
    otherwise keep the test database busy when pytest-django drops it."""
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
