"""The BentoML service with the assist apps mounted, for test_bentoml_service.py.

The store and the review folder come from ASSIST_TEST_DATABASE_URL and
ASSIST_TEST_IMAGES_DIR rather than MLLM_CLASSIFY_ASSIST__* variables, which
the service config rejects as an unknown section.
"""

from __future__ import annotations

import os

from service.assist.bentoml_mount import mount_assist_apps
from service.assist.settings import AssistSettings
from service.service import Classifier

mount_assist_apps(
    Classifier,
    AssistSettings(
        database_url=os.environ["ASSIST_TEST_DATABASE_URL"],
        images_dir=os.environ.get("ASSIST_TEST_IMAGES_DIR") or None,
        top_k=3,
    ),
)

__all__ = ["Classifier"]
