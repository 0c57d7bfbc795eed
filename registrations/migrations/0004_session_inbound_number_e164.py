from django.db import migrations, models

from registrations.phrases import normalize_phrase


def renormalize_phrases(apps, schema_editor):
    """Store phrases under the current normalisation (smart quotes and dashes folded)."""
    Session = apps.get_model("registrations", "Session")
    for session in Session.objects.only("pk", "phrase", "phrase_normalized").iterator():
        normalized = normalize_phrase(session.phrase)
        if normalized != session.phrase_normalized:
            Session.objects.filter(pk=session.pk).update(phrase_normalized=normalized)


class Migration(migrations.Migration):

    dependencies = [
        ("registrations", "0003_login_failures"),
    ]

    operations = [
        migrations.AlterField(
            model_name="session",
            name="inbound_number",
            field=models.CharField(
                blank=True,
                help_text="The Twilio number students text (E.164). Leave blank to accept any of ours.",
                max_length=32,
            ),
        ),
        migrations.RunPython(renormalize_phrases, migrations.RunPython.noop),
    ]
