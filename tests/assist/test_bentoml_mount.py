"""The glue that mounts the assist apps on the BentoML service class."""

from __future__ import annotations

import asyncio

import bentoml
import pytest
from starlette.applications import Starlette

from service.assist import bentoml_mount
from service.assist.settings import AssistSettings
from service.errors import ServiceError
from service.schemas import ClassifyParams

from .scripted import RED, TAXONOMY, ScriptedClassify


class _FakeService:
    """Stands in for a ready `Classifier` instance: classify_images and engine.mapper."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.calls: list[tuple[int, ClassifyParams, str]] = []
        self.engine = self
        self._classify = ScriptedClassify()

    async def classify_images(self, images, params, transport):
        self.calls.append((len(images), params, transport))
        return [await self._classify(images[0], params)]

    def mapper(self, name):
        if name not in (None, TAXONOMY.name):
            raise ValueError(f"unknown taxonomy {name!r}")
        return type("FakeMapper", (), {"taxonomy": TAXONOMY})()


def test_classify_goes_through_service(monkeypatch: pytest.MonkeyPatch) -> None:
    service = _FakeService()
    monkeypatch.setattr(bentoml, "get_current_service", lambda: service)

    result = asyncio.run(bentoml_mount.classify_with_service(RED, ClassifyParams(top_k=2)))
    assert result.labels[0].name == "tabby cat"
    assert service.calls[0][0] == 1
    assert service.calls[0][2] == "assist"
    assert bentoml_mount.service_taxonomy(None) is TAXONOMY


def test_service_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bentoml, "get_current_service", lambda: _FakeService(ready=False))
    with pytest.raises(ServiceError) as raised:
        asyncio.run(bentoml_mount.classify_with_service(RED, ClassifyParams()))
    assert raised.value.status == 503

    monkeypatch.setattr(bentoml, "get_current_service", lambda: None)
    with pytest.raises(ServiceError):
        bentoml_mount.service_taxonomy(None)


def test_mount_adds_both_apps(tmp_path) -> None:
    mounted: list[tuple[str, object]] = []

    class FakeServiceClass:
        mount_apps: list[tuple[object, str, None]] = []

        @classmethod
        def mount_asgi_app(cls, app, path):
            cls.mount_apps.append((app, path, None))
            mounted.append((path, app))

    settings = AssistSettings(database_url=f"sqlite:///{tmp_path / 'a.sqlite3'}")
    assert bentoml_mount.mount_assist_apps(FakeServiceClass, settings) is settings
    assert [path for path, _ in mounted] == ["/assist", "/labelstudio"]
    assert all(isinstance(app, Starlette) for _, app in mounted)

    bentoml_mount.mount_assist_apps(FakeServiceClass, settings)
    assert len(mounted) == 2
