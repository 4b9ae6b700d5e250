"""Names of the Ray actors, so every layer finds them the same way."""

MONITOR = "prescale-monitor"
POOL = "prescale-pool"
COORDINATOR = "prescale-coordinator"
