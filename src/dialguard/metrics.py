"""The gateway's Prometheus metrics, on a registry of its own (no module globals), served at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.optouts = Counter(
            "dialguard_optouts",
            "Opt-out keys pressed, by where they were kept: stored, journaled, or lost (neither written)",
            ["kept"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        data: bytes = generate_latest(self.registry)
        return data
