"""An upload handler that leaves a mark for every file Django starts spooling to disk.

Django deletes a temporary upload when the request ends, so an empty FILE_UPLOAD_TEMP_DIR
afterwards proves nothing; this mark stays, so the tests can assert no upload was ever written.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler


class MarkingTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        Path(settings.FILE_UPLOAD_TEMP_DIR, f"upload-started-{uuid.uuid4().hex}").touch()


SPY = f"{__name__}.MarkingTemporaryFileUploadHandler"
