"""HTTP API, WebSocket hub and dashboard."""
