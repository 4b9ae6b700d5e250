"""Pure core: samples, features, predictor, policy, pool, engine.

Nothing in this package imports Ray or psutil or touches files, sockets or the
clock: every function takes typed snapshots that carry their own ``now_s``.
"""
