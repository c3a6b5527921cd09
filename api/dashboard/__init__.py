"""Web dashboard: HTML pages under /ui that read the JSON API from the browser."""

from api.dashboard.routes import router

__all__ = ["router"]
