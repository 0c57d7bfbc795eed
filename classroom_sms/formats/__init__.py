"""Display formats of this project (settings.FORMAT_MODULE_PATH), one package per language."""
