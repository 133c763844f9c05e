"""Databases made before jobcast's apps had their own labels keep their data.

jobcast's apps were labelled `jobs` and `accounts` until 2026-12; a product with an app of
either name (a common one) could not install jobcast beside it, so they are `jobcast_jobs`
and `jobcast_accounts` now (docs/integration.md). The first migration of each new label
creates its tables, or, on a database that holds the old label's tables, renames those and
carries the old label's migration records and content types over, so data, admin
permissions and history stay. Nothing else uses the old labels.
"""

from __future__ import annotations

from django.db.migrations.recorder import MigrationRecorder


def adopt_or_create_tables(new_label: str, old_label: str, last_old_migration: str, model_names: list[str]):
    """A RunPython pair (forwards, backwards) for the first migration of `new_label`."""

    def forwards(apps, schema_editor):
        models = [apps.get_model(new_label, name) for name in model_names]
        old_tables = {model: f"{old_label}_{model._meta.model_name}" for model in models}
        connection = schema_editor.connection
        existing = set(connection.introspection.table_names())
        if not existing & set(old_tables.values()):
            for model in models:
                schema_editor.create_model(model)
            return
        recorder = MigrationRecorder.Migration._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT name FROM {recorder} WHERE app = %s", [old_label])
            applied = {name for (name,) in cursor.fetchall()}
        if last_old_migration not in applied:
            raise RuntimeError(
                f"this database has jobcast's tables from before its apps were relabelled, but not their "
                f"migration {old_label}.{last_old_migration}: migrate with the jobcast release before "
                f"2026-12 first, then with this one"
            )
        for model, old_table in old_tables.items():
            schema_editor.alter_db_table(model, old_table, model._meta.db_table)
        with connection.cursor() as cursor:
            # The old label was jobcast's alone (Django refuses two apps with one label).
            cursor.execute(f"DELETE FROM {recorder} WHERE app = %s", [old_label])
            if "django_content_type" in existing:
                cursor.execute("UPDATE django_content_type SET app_label = %s WHERE app_label = %s", [new_label, old_label])

    def backwards(apps, schema_editor):
        for name in reversed(model_names):
            schema_editor.delete_model(apps.get_model(new_label, name))

    return forwards, backwards
