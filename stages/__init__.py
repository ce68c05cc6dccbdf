"""One module per DVC stage (dvc.yaml): read the parameters, call the library, write the outputs, log."""
