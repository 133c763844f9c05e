"""The tables of `jobcast_jobs`: created, or adopted from a database made when this app was labelled
`jobs` (jobcast.legacy_labels)."""

import django.db.models.deletion
import jobcast.jobs.states
import uuid
from django.conf import settings
from django.db import migrations, models

from jobcast.legacy_labels import adopt_or_create_tables

forwards, backwards = adopt_or_create_tables(
    new_label="jobcast_jobs", old_label="jobs",
    last_old_migration="0002_remove_cancel_requested", model_names=["Job"],
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
                name='Job',
                fields=[
                    ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                    ('kind', models.CharField(max_length=100)),
                    ('params', models.JSONField(default=dict)),
                    ('state', models.CharField(choices=[('queued', 'queued'), ('running', 'running'), ('succeeded', 'succeeded'), ('failed', 'failed'), ('cancelled', 'cancelled')], default=jobcast.jobs.states.State['QUEUED'], max_length=16)),
                    ('progress', models.JSONField(default=dict)),
                    ('seq', models.PositiveBigIntegerField(default=0)),
                    ('result', models.JSONField(blank=True, null=True)),
                    ('error', models.JSONField(blank=True, null=True)),
                    ('attempts', models.PositiveIntegerField(default=0)),
                    ('idempotency_key', models.CharField(blank=True, max_length=255, null=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                    ('started_at', models.DateTimeField(blank=True, null=True)),
                    ('finished_at', models.DateTimeField(blank=True, null=True)),
                    ('owner', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='jobs', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'ordering': ['-created_at', '-id'],
                    'indexes': [models.Index(fields=['owner', '-created_at', '-id'], name='job_owner_newest'), models.Index(fields=['owner', 'state', '-created_at'], name='job_owner_state')],
                    'constraints': [models.UniqueConstraint(condition=models.Q(('idempotency_key__isnull', False)), fields=('owner', 'idempotency_key'), name='job_idempotency_key_per_owner')],
                },
            ),
        ]),
        migrations.RunPython(forwards, backwards),
    ]
