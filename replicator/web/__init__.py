"""The read-only web server: dashboard, ``/metrics``, ``/api/status``, health.

Imports ``config`` and ``errors``; the service hands it what to show.
"""
