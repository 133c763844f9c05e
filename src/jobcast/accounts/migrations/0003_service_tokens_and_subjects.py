# Service tokens (a product backend submitting on a user's behalf) and the users made for the
# `sub` of product-signed tokens.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_token_expiry_and_revocation'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='apitoken',
            name='service',
            field=models.BooleanField(default=False),
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
    ]
