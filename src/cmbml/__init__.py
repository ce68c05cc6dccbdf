"""cmbml: reproducible neural-network experiments on simulated CMB skies."""
__version__ = "0.1.0"
