from django.contrib.auth.management import create_permissions
from django.db import migrations

INSTRUCTOR_PERMISSIONS = {
    "classroom": ("add", "change", "delete", "view"),
    "session": ("add", "change", "delete", "view"),
    "account": ("change", "view"),
    "inboundmessage": ("view",),
    "outboundmessage": ("view",),
}


def create_instructors_group(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Instructors")
    codenames = [
        f"{action}_{model}" for model, actions in INSTRUCTOR_PERMISSIONS.items() for action in actions
    ]
    group.permissions.set(
        Permission.objects.filter(content_type__app_label="registrations", codename__in=codenames)
    )


def remove_instructors_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Instructors").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("registrations", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_instructors_group, remove_instructors_group)]
