"""Onward's HTTP API (``onward api``): runs over HTTP, a thin adapter over ``OnwardClient``.

app = api_app(ApiSettings(connect=OnwardClient.connect))
uvicorn.run(app, host="127.0.0.1", port=8700)
"""

from onward.starter.api.app import ApiSettings, api_app, idempotent_run_id
from onward.starter.api.tenants import DEFAULT_TENANT, Limits

__all__ = ["DEFAULT_TENANT", "ApiSettings", "Limits", "api_app", "idempotent_run_id"]
