"""Shared fixtures: the repository root, composed parameter sets and theory spectra."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

REPO = Path(__file__).resolve().parents[1]


def compose(*overrides: str) -> dict:
    """Compose conf/ exactly as `dvc exp run -S ...` does (Hydra, interpolations resolved)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return OmegaConf.to_container(cfg)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def camb_cls() -> dict:
    """CAMB spectra for the default cosmology, to lmax 3000 (a few seconds, once per session)."""
    from cmbml.common.spectra import camb_spectra

    return camb_spectra(compose()["cosmology"], 3000)
