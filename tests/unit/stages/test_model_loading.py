"""Loading a model never runs code from it: only Keras archives load, in safe mode, and everything else (serialised
Python, exported TensorFlow graphs, other MLflow flavors, data paths outside the model folder, files that are not
archives) is refused in one line, for files, MLflow model folders and `cmbml predict` alike."""

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.helpers import run_cmbml

CARD = {
    "experiment": "lensing",
    "input": {"channels": ["T"], "units": "uK_CMB", "npix": 8, "pixel_arcmin": 10.0},
    "output": {"quantity": "kappa", "channels": ["kappa"], "units": "dimensionless", "npix": 8, "pixel_arcmin": 10.0},
}


def _save(model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    (folder / "model_card.json").write_text(json.dumps(CARD))
    return folder / "model.keras"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    import keras

    inputs = keras.Input((8, 8, 1))
    return _save(keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs)), tmp_path_factory.mktemp("p"))


@pytest.fixture(scope="module")
def with_lambda(tmp_path_factory):
    import keras

    inputs = keras.Input((8, 8, 1))
    return _save(keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0)(inputs)), tmp_path_factory.mktemp("l"))


def predict(model_ref, tmp_path):
    import numpy as np

    maps = tmp_path / "maps.npy"
    np.save(maps, np.zeros((2, 8, 8), dtype=np.float32))
    return run_cmbml("predict", model_ref, maps, "-o", tmp_path / "o.h5", "--pixel-arcmin", "10")


def test_a_plain_keras_archive_loads(plain):
    from stages.model_registry import load_model

    model, card = load_model(str(plain))
    assert model.output_shape == (None, 8, 8, 1) and card == CARD


def test_a_lambda_layer_is_refused_in_one_line(with_lambda, tmp_path):
    """Serialised Python (a Lambda layer) is refused by safe mode; `cmbml predict` says so in one line (it printed a
    67-line traceback)."""
    from stages.model_registry import ModelError, load_model

    with pytest.raises(ModelError, match="cannot be loaded in Keras's safe mode"):
        load_model(str(with_lambda))
    out = predict(with_lambda, tmp_path)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"cmbml predict: {with_lambda}: cannot be loaded in Keras's safe mode")


def test_a_file_that_is_not_an_archive_is_refused(tmp_path):
    """A legacy HDF5 (or any other file) named .keras is not read by Keras's legacy loaders."""
    from stages.model_registry import ModelError, load_model

    fake = tmp_path / "model.keras"
    fake.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    (tmp_path / "model_card.json").write_text(json.dumps(CARD))
    with pytest.raises(ModelError, match=r"model.keras: not a Keras archive"):
        load_model(str(fake))


def mlflow_folder(tmp_path, plain, flavors: dict) -> Path:
    import yaml

    folder = tmp_path / "mlflow_model"
    (folder / "data").mkdir(parents=True)
    shutil.copy(plain, folder / "data" / "model.keras")
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors, "metadata": CARD}))
    return folder


def test_an_mlflow_keras_folder_loads(tmp_path, plain):
    from stages.model_registry import load_model

    folder = mlflow_folder(tmp_path, plain, {"keras": {"data": "data", "keras_version": "3"}})
    model, card = load_model(str(folder))
    assert model.output_shape == (None, 8, 8, 1) and card == CARD


@pytest.mark.parametrize(
    "flavors, says",
    [
        ({"python_function": {"loader_module": "os", "data": "data"}}, "an MLflow model of flavor(s) python_function"),
        ({"keras": {"data": "data", "save_exported_model": True}}, "an exported TensorFlow graph"),
        ({"keras": {"data": "../../elsewhere"}}, "its MLmodel points outside the model folder"),
    ],
    ids=["other-flavor", "exported-graph", "outside"],
)
def test_mlflow_folders_that_would_run_code_are_refused(tmp_path, plain, flavors, says):
    """An MLmodel naming another flavor's loader, an exported TensorFlow graph (whose loading runs its ops) or a file
    outside its folder is refused before anything is loaded, in one line, also by `cmbml predict`."""
    from stages.model_registry import ModelError, load_model

    folder = mlflow_folder(tmp_path, plain, flavors)
    with pytest.raises(ModelError, match=rf"mlflow_model: {__import__('re').escape(says)}"):
        load_model(str(folder))
    out = predict(folder, tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and says in out.stderr


def test_an_archive_without_a_config_is_refused(tmp_path):
    from stages.model_registry import ModelError, load_model

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("payload.py", "print('hello')")
    (tmp_path / "model_card.json").write_text(json.dumps(CARD))
    with pytest.raises(ModelError, match="without config.json"):
        load_model(str(path))


def test_cmbml_predict_never_overwrites_and_checks_the_output_first(plain, tmp_path):
    """`cmbml predict`: the input named as output is refused and left intact; an existing output needs --overwrite;
    a NumPy output is refused before the model is even loaded (a missing model is not reached)."""
    import numpy as np
    from astropy.io import fits

    src = tmp_path / "T.fits"
    fits.PrimaryHDU(
        np.ones((8, 8), np.float32), fits.Header({"CDELT1": -1 / 6, "CDELT2": 1 / 6, "BUNIT": "uK_CMB"})
    ).writeto(src)
    before = src.read_bytes()

    def run(*args):
        return run_cmbml("predict", *args)

    out = run(plain, src, "-o", src)
    assert out.returncode == 2 and "is the input file" in out.stderr and src.read_bytes() == before
    out = run(tmp_path / "missing.keras", src, "-o", tmp_path / "k.npy")
    assert out.returncode == 2 and "NumPy files carry no units" in out.stderr
    assert run(plain, src, "-o", tmp_path / "k.fits").returncode == 0
    out = run(plain, src, "-o", tmp_path / "k.fits")
    assert out.returncode == 2 and "exists; pass --overwrite" in out.stderr
    assert run(plain, src, "-o", tmp_path / "k.fits", "--overwrite").returncode == 0
    fits.PrimaryHDU(np.ones((8, 8), np.float32), fits.Header({"CDELT1": -1 / 6, "CDELT2": 1 / 6})).writeto(
        tmp_path / "K.fits"
    )
    out = run(plain, tmp_path / "K.fits", "-o", tmp_path / "k2.fits")
    assert out.returncode == 2 and "state no units" in out.stderr
