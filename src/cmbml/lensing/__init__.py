"""The lensing experiment (after cnn_lensing): simulation, validation, the quadratic estimator, networks, figures."""
