"""cmbml: reproducible neural-network experiments on simulated CMB skies."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cmbml")  # pyproject.toml's, as installed (scripts/setup.sh installs it editable)
except PackageNotFoundError:  # a source tree on PYTHONPATH that was never installed
    __version__ = "0+unknown"
