"""``replicator run`` (container mode): start-up checks, wiring pairs into pipelines, tenures
under the lease, garbage-collector settings.

Imports the layers below (``aws``, ``config``, ``apply``, ``stream``, ``pipeline``, ``ha``,
``telemetry``, ``web``); only ``lambda_mode``, ``tools`` and ``cli`` import it.
"""
