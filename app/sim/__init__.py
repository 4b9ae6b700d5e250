"""Simulated fleets with ground-truth failures (pure: numpy and pandas only)."""

from prescale.app.sim.fleet import FAILING_SCENARIOS, SCENARIOS, SimFleet, simulate_fleet

__all__ = ["FAILING_SCENARIOS", "SCENARIOS", "SimFleet", "simulate_fleet"]
