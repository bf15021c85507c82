"""MovieRecs training: MovieLens data, iALS + popularity training (rectools/implicit), evaluation,
hyperparameter search, the retraining pipeline's steps and the CLI (``python -m movierecs_training``)."""
