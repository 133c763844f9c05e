"""The tables of `jobcast_accounts`: created, or adopted from a database made when this app was labelled
`accounts` (jobcast.legacy_labels)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from jobcast.legacy_labels import adopt_or_create_tables

forwards, backwards = adopt_or_create_tables(
    new_label="jobcast_accounts", old_label="accounts",
    last_old_migration="0003_service_tokens_and_subjects", model_names=["ApiToken", "SubjectUser"],
)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # State here, tables in the RunPython: they may already exist under the old label.
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='ApiToken',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('key_hash', models.CharField(max_length=64, unique=True)),
                    ('prefix', models.CharField(blank=True, db_index=True, default='', max_length=16)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('expires_at', models.DateTimeField(blank=True, null=True)),
                    ('revoked_at', models.DateTimeField(blank=True, null=True)),
                    ('service', models.BooleanField(default=False)),
                    ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
                ],
            ),
            migrations.CreateModel(
                name='SubjectUser',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('subject', models.CharField(max_length=255, unique=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='jobcast_subject', to=settings.AUTH_USER_MODEL)),
                ],
            ),
        ]),
        migrations.RunPython(forwards, backwards),
    ]
