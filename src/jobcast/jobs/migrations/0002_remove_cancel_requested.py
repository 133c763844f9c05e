# The flag was written and never read: a running job's worker reads the Redis cancel flag
# (jobcast.jobs.services.job_cancel_requested), which is the one source.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0001_initial'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='job',
            name='cancel_requested',
        ),
    ]
