"""Ray Serve's REST API on the dashboard: the path ``serve deploy`` and ``serve status`` use.

``GET /api/serve/applications/`` returns every application's details (status, the
``deployed_app_config`` the user deployed, each deployment's live config and replicas);
``PUT /api/serve/applications/`` takes a whole ``ServeDeploySchema`` and applies it
declaratively (applications deployed through this API but missing from the body are
deleted; applications deployed from Python with ``serve.run`` are left alone).

Both go through Ray's own ``ServeSubmissionClient`` (what the ``serve`` CLI uses), so
Ray's token authentication headers and version check are the CLI's. The dashboard's
address is the setting ``sources.serve_dashboard_url`` or, when empty, the one the
cluster records in its GCS (``webui:url``, what ``ray.init()`` reports as
``dashboard_url``).
"""

from __future__ import annotations

from typing import Any


class ServeApiError(RuntimeError):
    """The dashboard's Serve API cannot be reached or refused a request."""


def cluster_dashboard_url() -> str:
    """The connected cluster's dashboard URL (``http://host:port``), from the GCS."""
    from ray._private.services import get_webui_url_from_internal_kv

    url = get_webui_url_from_internal_kv()
    if not url:
        raise ServeApiError("the Ray cluster records no dashboard (started with "
                            "include_dashboard=False?): the Serve REST API needs it; set "
                            "sources.serve_dashboard_url or start Ray with the dashboard")
    return url if "://" in url else f"http://{url}"


class ServeRestClient:
    """The two calls prescale makes: read all applications, deploy a whole config."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._client: Any = None

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = cluster_dashboard_url()
        return self._url

    def _get_client(self) -> Any:
        if self._client is None:
            from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

            try:
                self._client = ServeSubmissionClient(self.url)
            except Exception as exc:  # noqa: BLE001 - connection, version, bad URL
                raise ServeApiError(f"Serve REST API at {self.url}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        return self._client

    def details(self) -> dict[str, Any]:
        """``GET /api/serve/applications/`` as a dict (``ServeInstanceDetails``)."""
        try:
            return self._get_client().get_serve_details()
        except ServeApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - HTTP errors, connection refused
            self._client = None
            raise ServeApiError(f"GET {self.url}/api/serve/applications/: "
                                f"{type(exc).__name__}: {exc}") from exc

    def deploy(self, config: dict[str, Any]) -> None:
        """``PUT /api/serve/applications/`` with a whole ``ServeDeploySchema`` dict."""
        try:
            self._get_client().deploy_applications(config)
        except ServeApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - HTTP errors, a refused config
            self._client = None
            raise ServeApiError(f"PUT {self.url}/api/serve/applications/: "
                                f"{type(exc).__name__}: {exc}") from exc
