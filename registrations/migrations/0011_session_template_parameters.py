from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("registrations", "0010_coder_route_window"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="template_parameters",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Values for the Coder template's parameters, by parameter name.",
            ),
        ),
    ]
