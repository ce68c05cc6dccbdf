"""Shared code: grids, transforms, I/O, units, executors, the validation gate, training utilities."""
