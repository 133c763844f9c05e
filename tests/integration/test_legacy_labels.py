"""A database made when jobcast's apps were labelled `jobs` and `accounts` keeps its data after
the relabelling to `jobcast_jobs` and `jobcast_accounts` (jobcast.legacy_labels)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from jobcast.accounts.models import ApiToken, SubjectUser
from jobcast.accounts.services import token_create
from jobcast.jobs.models import Job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

LEGACY = {
    "jobs": (["0001_initial", "0002_remove_cancel_requested"], [Job]),
    "accounts": (["0001_initial", "0002_token_expiry_and_revocation", "0003_service_tokens_and_subjects"],
                 [ApiToken, SubjectUser]),
}
NEW_LABEL = {"jobs": "jobcast_jobs", "accounts": "jobcast_accounts"}


def make_it_legacy(recorded: dict[str, list[str]]) -> None:
    """Turn the test database into one an earlier jobcast made: old table names, old migration
    records (`recorded`: which, per old label) and old content types."""
    with connection.schema_editor() as editor:
        for old, (_, models) in LEGACY.items():
            for model in models:
                editor.alter_db_table(model, model._meta.db_table, f"{old}_{model._meta.model_name}")
    migrations = MigrationRecorder.Migration.objects
    for old, new in NEW_LABEL.items():
        migrations.filter(app=new).delete()
        for name in recorded[old]:
            migrations.create(app=old, name=name)
        ContentType.objects.filter(app_label=new).update(app_label=old)
    ContentType.objects.clear_cache()


def tables() -> set[str]:
    return set(connection.introspection.table_names())


def test_an_earlier_database_keeps_its_jobs_tokens_and_permissions(user):
    job = Job.objects.create(owner=user, kind="demo.count", params={"steps": 3}, seq=7)
    raw_token = token_create(user.username)
    permission_id = Permission.objects.get(codename="view_job").id
    job_type_id = ContentType.objects.get_for_model(Job).id

    make_it_legacy({old: names for old, (names, _) in LEGACY.items()})
    assert {"jobs_job", "accounts_apitoken", "accounts_subjectuser"} <= tables()
    assert "jobcast_jobs_job" not in tables()

    call_command("migrate", verbosity=0)

    assert {"jobcast_jobs_job", "jobcast_accounts_apitoken", "jobcast_accounts_subjectuser"} <= tables()
    assert not {"jobs_job", "accounts_apitoken", "accounts_subjectuser"} & tables()
    again = Job.objects.get(id=job.id)
    assert (again.owner_id, again.kind, again.params, again.seq) == (user.id, "demo.count", {"steps": 3}, 7)
    assert ApiToken.objects.filter(user=user).count() == 1 and raw_token.startswith("jc_")
    # The old labels' records are gone (a product may now have apps of those names)...
    recorded = set(MigrationRecorder.Migration.objects.values_list("app", flat=True))
    assert {"jobcast_jobs", "jobcast_accounts"} <= recorded and not {"jobs", "accounts"} & recorded
    # ...and the content types moved, so permissions given on jobs stay given.
    ContentType.objects.clear_cache()
    assert ContentType.objects.get_for_model(Job).id == job_type_id
    assert Permission.objects.get(codename="view_job").content_type_id == job_type_id
    assert Permission.objects.get(codename="view_job").id == permission_id


def test_an_earlier_database_that_was_not_fully_migrated_is_refused_with_a_clear_error():
    make_it_legacy({"jobs": ["0001_initial"], "accounts": LEGACY["accounts"][0]})
    try:
        with pytest.raises(RuntimeError, match=r"not their migration jobs\.0002_remove_cancel_requested"):
            call_command("migrate", verbosity=0)
        assert "jobs_job" in tables()  # left as it was
    finally:
        MigrationRecorder.Migration.objects.create(app="jobs", name="0002_remove_cancel_requested")
        call_command("migrate", verbosity=0)
    assert "jobcast_jobs_job" in tables() and "jobs_job" not in tables()
