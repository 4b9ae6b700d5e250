"""The control loop's tick, in one place, free of Ray.

:mod:`app.loop.tick` is the tick as one function over typed ports
(:mod:`app.loop.ports`): collect a shard of windows, featurise, predict, judge, decide,
arbitrate, journal the intent, apply, settle, record. The live actors
(:mod:`actors.coordinator`), the evaluator's simulated world
(:mod:`app.evaluation.world`) and tests all build ports and call it; none keeps its own
copy. :mod:`app.loop.shard` merges the shards of several nodes, :mod:`app.loop.records`
is the decision log's one schema, :mod:`app.loop.status` the status rows.
"""
