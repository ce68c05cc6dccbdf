"""The component-separation experiment's setup: one variant (E, B, QU) at one scale, checked, with what
follows from it.

Built once from params.yaml by every CENN stage (:meth:`CennSetup.from_params`): the whole file is validated
against the schema (:mod:`cmbml.cenn.schema` and the shared blocks; the instrument table is read and the
target channel found before any compute), then the setup holds the sky band limit, the patch and its crop,
the NaMaster bins, beams and interpolation window, training and MLflow settings, every path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmbml.cenn.schema import EXPERIMENT, SPLIT_FILES, CennGeometry
from cmbml.cenn.simulate import Instrument
from cmbml.common.config import Tracking, logged_params, tracking_from_params
from cmbml.common.executors import ExecutorSpec
from cmbml.common.integrity import params_digest
from cmbml.common.params import ParamError, load_params
from cmbml.common.roles import EVALUATION, ROLES
from cmbml.common.schema import Merged, SchemaKeys, validate_params

if TYPE_CHECKING:
    from cmbml.cenn.baselines import BaselineSetup

__all__ = ["FOREGROUND_SKIES", "ROLES", "SPLIT_FILES", "CennGeometry", "CennSetup", "load"]

FOREGROUND_SKIES = {"training": "foregrounds", "unseen": "unseen_foregrounds"}
"""The foreground skies of one parameter set and their parameter blocks: the network trains on the first; the
second (another model) gives only Validation patches, with the same CMB, noise and patch centres."""


@dataclass(frozen=True)
class CennSetup:
    """One component-separation parameter set (E, B or QU at a scale), checked, with what follows from it.

    ``train`` reads as one block: ``cenn_train`` with the scale's ``epochs``; ``paths`` is ``paths.cenn`` (with
    the unseen sky's own files in place of the training sky's for ``foreground_sky="unseen"``), the CAMB table
    (``camb_cls``) and the Data Docs folder (``data_docs``).
    """

    seed: int
    cosmology: Mapping[str, float]
    scale: str
    variant: str
    foreground_sky: str  # "training" or "unseen" (FOREGROUND_SKIES): which sky `foregrounds` and the paths describe
    roles: tuple[str, ...]  # the patch sets cut from this sky: all three for training, evaluation for unseen
    components: tuple[str, ...]
    spectra: tuple[str, ...]
    instrument: Instrument
    geometry: CennGeometry
    n_samples: Mapping[str, int]  # patches per role (cmbml.common.roles)
    n_cmb_realisations: int
    foregrounds: Mapping[str, Any]  # the sky's block as written in the file
    b_min_deg: float
    holdout_lon_deg: tuple[float, float]
    early_stopping_lon_deg: tuple[float, float]
    executor: ExecutorSpec  # where the simulation runs; the files do not depend on it
    net_architecture: str  # a name of cmbml.cenn.networks.ARCHITECTURES
    net_params: Any  # that architecture's validated Params
    train: Any  # cenn_train and the scale's epochs (cmbml.common.schema.Merged)
    apodization_deg: float
    bin_width: float
    residual_ell_ranges: tuple[tuple[float, float], ...]
    n_example_patches: int
    separate: Any  # cenn_separate: the network on a full sky (cmbml.cenn.schema.CennSeparate)
    tracking: Tracking
    paths: Any  # paths.cenn of the sky, camb_cls and data_docs (cmbml.common.schema.Merged)
    dataset_digest: str  # of DATASET_KEYS: every patch file carries it, the gate compares

    DATASET_KEYS = SchemaKeys(EXPERIMENT, "dataset")
    """The parameters that decide the patches' content."""
    KEYS = SchemaKeys(EXPERIMENT, "logged")
    """The parameters of this experiment (what its MLflow runs log) ..."""
    EVALUATION_KEYS = SchemaKeys(EXPERIMENT, "evaluation")
    """... of which these set only the evaluation (logged by it as tags)."""

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        conf_dir: str | Path = "conf",
        source: str = "params.yaml",
        foreground_sky: str = "training",
    ) -> CennSetup:
        """The setup of one foreground sky: ``training``, or ``unseen``, where ``foregrounds`` holds the
        ``unseen_foregrounds`` block and the foreground, patch and report paths are those of ``paths.cenn.unseen``."""
        if foreground_sky not in FOREGROUND_SKIES:  # the stages' --foregrounds option
            raise ParamError(
                [f"--foregrounds {foreground_sky!r}: allowed {' or '.join(FOREGROUND_SKIES)}"], "the command line"
            )
        m = validate_params(params, conf_dir, source, experiment=EXPERIMENT)
        p, paths = params, m.paths.cenn
        if foreground_sky == "unseen":
            p, paths = {**params, "foregrounds": params["unseen_foregrounds"]}, paths.of_unseen_sky()
        scale, sim, ev = m.scale.cenn, m.cenn_simulate, m.cenn_evaluate
        return cls(
            seed=m.seed,
            cosmology=dict(params["cosmology"]),
            scale=m.scale.name,
            variant=m.cenn.variant,
            foreground_sky=foreground_sky,
            roles=ROLES if foreground_sky == "training" else (EVALUATION,),
            components=tuple(m.cenn.components),
            spectra=tuple(m.cenn.spectra),
            instrument=m.instrument.read(),
            geometry=scale.geometry,
            n_samples={r: getattr(scale, f"n_{r}") for r in ROLES},
            n_cmb_realisations=m.cmb_maps.n_realisations,
            foregrounds=params[FOREGROUND_SKIES[foreground_sky]],
            b_min_deg=float(sim.b_min_deg),
            holdout_lon_deg=tuple(sim.holdout_lon_deg),
            early_stopping_lon_deg=tuple(sim.early_stopping_lon_deg),
            executor=m.executor.spec(sim.workers),
            net_architecture=m.cenn_net.architecture,
            net_params=m.cenn_net.params,
            train=Merged(m.cenn_train, scale),
            apodization_deg=float(ev.apodization_deg),
            bin_width=float(ev.bin_width),
            residual_ell_ranges=tuple(tuple(r) for r in ev.residual_ell_ranges),
            n_example_patches=ev.n_example_patches,
            separate=m.cenn_separate,
            tracking=tracking_from_params(
                p,
                m.mlflow.cenn_experiment,
                f"{m.mlflow.cenn_registered_model_prefix}-{m.cenn.variant}",
                cls.KEYS,
                cls.EVALUATION_KEYS,
                DESCRIPTION,
            ),
            paths=Merged(paths, camb_cls=m.paths.spectra.camb_cls, data_docs=m.paths.data_docs),
            dataset_digest=params_digest(logged_params(p, cls.DATASET_KEYS)),
        )

    @property
    def nside(self) -> int:
        return self.geometry.nside

    @property
    def model_card(self) -> dict[str, Any]:
        """What a user of the trained network must know to apply it (stored beside the model, in its
        MLflow metadata and read by ``cmbml predict``): geometry, channels, beams and units."""
        from cmbml.cenn.simulate import CONVENTIONS

        patch, target = self.geometry.patch, self.instrument.target_channel
        return {
            "experiment": "cenn",
            "parameter_set": self.variant,
            "scale": self.scale,
            "registered_model": self.tracking.registered_model,
            "params_digest": self.dataset_digest,
            "components": list(self.components),
            "input": {
                "quantity": f"sky maps ({'/'.join(self.components)}) per frequency channel",
                "channels": self.input_channels,
                "units": "uK_CMB",
                "npix": patch.npix,
                "pixel_arcmin": patch.pixel_arcmin,
                "nside": self.nside,  # of the HEALPix skies the patches were cut from (`cmbml separate` checks it)
                "fwhm_arcmin": [ch.fwhm_arcmin for ch in self.instrument.channels],
                "layout": "[sample, y, x, channel]",
            },
            "output": {
                "quantity": f"CMB at {target.freq_ghz:g} GHz (its beam)",
                "channels": [f"CMB {c}" for c in self.components],
                "units": "uK_CMB",
                "target_GHz": target.freq_ghz,
                "fwhm_arcmin": target.fwhm_arcmin,
                "npix": patch.npix,
                "pixel_arcmin": patch.pixel_arcmin,
            },
            "conventions": CONVENTIONS["layout"],
        }

    @property
    def input_channels(self) -> list[str]:
        """The network's input channels, every component at every frequency (``"Q 100GHz"``, ..., ``"U 217GHz"``;
        ``"100GHz"``, ... for a single component), in the order of the patch files joined along channels."""
        freqs = [f"{f:g}GHz" for f in self.instrument.freqs_ghz]
        if len(self.components) == 1:
            return freqs
        return [f"{c} {f}" for c in self.components for f in freqs]

    @property
    def spin(self) -> int:
        """NaMaster field spin: 2 for (Q, U) with B-mode purification, 0 for scalar E or B maps."""
        return 2 if self.components == ("Q", "U") else 0

    @cached_property
    def beams(self) -> list[np.ndarray]:
        """Gaussian beam transfer function of each channel to the sky band limit."""
        from cmbml.cenn.fullsky import gauss_beam

        return [gauss_beam(ch.fwhm_arcmin, self.geometry.sky_lmax) for ch in self.instrument.channels]

    @cached_property
    def interpolation_window(self) -> np.ndarray:
        """Transfer function of the HEALPix-to-patch interpolation, to the sky band limit."""
        from cmbml.cenn.fullsky import interpolation_window

        return interpolation_window(self.nside, self.geometry.sky_lmax)

    @property
    def label_transfer(self) -> np.ndarray:
        """What the label's CMB went through: the target beam and the interpolation window."""
        return self.beams[self.instrument.target] * self.interpolation_window

    @property
    def channel_response(self) -> np.ndarray:
        """Each channel's response to the label, ``B_c / B_target`` per multipole, (channels, sky_lmax + 1)."""
        return np.stack(self.beams) / self.beams[self.instrument.target]

    def label_spectra(self) -> dict[str, np.ndarray]:
        """The label's theory ``{"EE", "BB"}``: CAMB's lensed C_ell (uK^2, ell = 0 .. sky_lmax, read from
        ``paths.camb_cls``) through the label's transfer."""
        from cmbml.common.spectra import read_spectra_csv

        camb, lmax = read_spectra_csv(self.paths.camb_cls), int(self.geometry.sky_lmax)
        return {s: camb[f"cl_{s.lower()}_lensed"][: lmax + 1] * self.label_transfer**2 for s in ("EE", "BB")}

    def baseline_setup(self) -> BaselineSetup:
        """What the classical baselines use beside the patches (:class:`cmbml.cenn.baselines.BaselineSetup`)."""
        from cmbml.cenn.baselines import BaselineSetup

        return BaselineSetup(
            self.geometry.patch, self.channel_response, self.label_spectra(), self.bin_width, tuple(self.components)
        )

    @cached_property
    def bin_edges(self) -> np.ndarray:
        return self.geometry.bin_edges(self.bin_width)

    @property
    def noise_sigma_pix(self) -> list[float]:
        """White-noise rms per patch pixel of each channel (uK), zero when noise is off."""
        return [
            ch.noise_uk_arcmin / self.geometry.pixel_arcmin if self.foregrounds["noise"] else 0.0
            for ch in self.instrument.channels
        ]


DESCRIPTION = (
    "Component separation: CENN recovers the CMB at the target channel from three frequency channels of "
    "polarized skies (CMB, dust, synchrotron, radio and infrared sources, noise, beams). One run per training; "
    "its evaluation adds validation_* metrics (map MSE of the network beside the Wiener filter, the linear "
    "filter and the ILCs), NaMaster spectra (table spectra.json), the detailed scores and plots. "
    "Models: cmbml-cenn-<variant>@<scale>."
)


def load(
    path: str | Path = "params.yaml", conf_dir: str | Path = "conf", foreground_sky: str = "training"
) -> CennSetup:
    """The CENN setup of a params file (what every CENN stage starts with), for one foreground sky."""
    return CennSetup.from_params(load_params(path), conf_dir, source=str(path), foreground_sky=foreground_sky)
