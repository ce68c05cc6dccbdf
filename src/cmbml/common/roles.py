"""The three roles a dataset plays, named alike in both experiments.

``training``: the network's weights are fitted on it (and the classical filters that need a fit).
``early_stopping``: the loss that picks the epoch (Keras' ``val_loss``); never scored.
``evaluation``: every method is scored on it; nothing is fitted or chosen on it.

Each experiment maps the roles to its file names in one place (``cmbml.lensing.setup.SPLIT_FILES``,
``cmbml.cenn.setup.SPLIT_FILES``; CENN keeps the original project's ``Train``, ``Test`` and ``Validation``).
"""

TRAINING = "training"
EARLY_STOPPING = "early_stopping"
EVALUATION = "evaluation"
ROLES = (TRAINING, EARLY_STOPPING, EVALUATION)
