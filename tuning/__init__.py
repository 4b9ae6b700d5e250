"""Ray Tune search spaces, trainables and the retraining job (issue "Failure models").

Nothing lives here yet: the spine ships only the training-free trend predictor
(app/core/predictor.py).
"""
