"""Log levels of the project's loggers inside BentoML server processes.

BentoML 1.4.40 sets the root logger to WARNING in its server processes
(bentoml/_internal/log.py), which would hide model load times, readiness and
request errors logged at INFO. The project's loggers get their own level,
INFO unless MLLM_CLASSIFY_LOG_LEVEL says otherwise.
"""

from __future__ import annotations

import logging
import os

PROJECT_LOGGERS = ("mllm_classify", "service", "mapping")


def configure_service_logging() -> None:
    level_name = os.environ.get("MLLM_CLASSIFY_LOG_LEVEL", "INFO").upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        level = logging.INFO
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)
