import os

from django.db import migrations, models

# The default of CODER_EMAIL_DOMAIN before it was shortened: the users that existing rows
# created in Coder carry it unless the deployment set its own.
FORMER_DEFAULT_DOMAIN = "classroom-sms.invalid"


def backfill_emails(apps, schema_editor):
    """Record the login email of every account that already has a Coder user."""
    Account = apps.get_model("registrations", "Account")
    domain = os.environ.get("CODER_EMAIL_DOMAIN") or FORMER_DEFAULT_DOMAIN
    rows = Account.objects.exclude(coder_username="").filter(coder_email="")
    for pk, username in rows.values_list("pk", "coder_username").iterator():
        Account.objects.filter(pk=pk).update(coder_email=f"{username.lower()}@{domain}")


class Migration(migrations.Migration):

    dependencies = [
        ("registrations", "0004_session_inbound_number_e164"),
    ]

    operations = [
        migrations.AddField(
            model_name="account",
            name="coder_email",
            field=models.EmailField(blank=True, max_length=254),
        ),
        migrations.RunPython(backfill_emails, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="session",
            name="credentials_message",
            field=models.TextField(
                blank=True,
                help_text="Override of the credentials SMS. Placeholders: {url} {email} "
                "{password} {expires} {username}; {email} and {password} are required, because "
                "Coder's login form asks for the email address. Leave blank for the default.",
            ),
        ),
        migrations.AlterField(
            model_name="account",
            name="deletion_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("expired", "Session expired"),
                    ("revoked", "Revoked by an admin"),
                    ("done", "Student texted DONE"),
                    ("ended", "Session ended early"),
                    ("gone", "Deleted in Coder directly"),
                ],
                max_length=10,
            ),
        ),
    ]
