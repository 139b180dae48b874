"""Mount the assist apps in the BentoML service, on its shared classification path.

In `service/service.py`, next to the service's other mounts:

    from service.assist.bentoml_mount import mount_assist_apps
    mount_assist_apps(Classifier)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.assist.app import build_assist_app
from service.assist.labelstudio_app import build_labelstudio_app
from service.assist.settings import AssistSettings
from service.errors import not_ready
from service.schemas import ClassifyParams, ClassifyResult

if TYPE_CHECKING:
    from mapping import Mapper, Taxonomy

# Transport name that the service passes to its metrics (the `transport` label of errors_total).
TRANSPORT = "assist"


def _current_service() -> Any:
    import bentoml

    service = bentoml.get_current_service()
    if service is None or not getattr(service, "ready", False):
        raise not_ready()
    return service


async def classify_with_service(image: bytes, params: ClassifyParams) -> ClassifyResult:
    """Classify one image through `Classifier.classify_images`, so it joins the adaptive batches."""
    results = await _current_service().classify_images([image], params, TRANSPORT)
    return results[0]


def service_mapper(name: str | None) -> Mapper:
    """Return the service's mapper of a taxonomy (None: the default); raise for one not served."""
    return _current_service().engine.mapper(name)


def service_taxonomy(name: str | None) -> Taxonomy:
    """Return a taxonomy served by the service (None: the default)."""
    return service_mapper(name).taxonomy


def mount_assist_apps(service_class: Any, settings: AssistSettings | None = None) -> AssistSettings:
    """Mount `/assist` and `/labelstudio` on a BentoML service class; return the settings used.

    A second call on the same class mounts nothing, so the service module and
    a wrapper of it can both call this.
    """
    settings = settings or AssistSettings.from_env()
    mounted_paths = {entry[1] for entry in getattr(service_class, "mount_apps", [])}
    if "/assist" in mounted_paths:
        return settings
    service_class.mount_asgi_app(
        build_assist_app(classify_with_service, service_taxonomy, settings, service_mapper), path="/assist"
    )
    service_class.mount_asgi_app(
        build_labelstudio_app(classify_with_service, service_taxonomy, settings, service_mapper), path="/labelstudio"
    )
    return settings
