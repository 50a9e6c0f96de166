"""Configs and schemas: every group option and experiment preset composes, validates and instantiates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hydra")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from torch_ising.experiment import data as data_mod  # noqa: E402
from torch_ising.experiment import schemas  # noqa: E402
from torch_ising.experiment.cli import CONFIG_DIR, find_config_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("data", "model", "fit", "output", "experiment", "hydra/launcher")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (REPO / "configs" / group).glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def _registered():
    schemas.register_configs()


# Our launcher presets share the plugins' names on purpose (Hydra also validates them against the plugins' schemas).
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema:UserWarning")


@pytest.fixture
def hydra_dir():
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        yield


def test_config_dir_is_found_in_a_checkout():
    assert CONFIG_DIR == REPO / "configs" == find_config_dir()
    assert (CONFIG_DIR / "config.yaml").is_file()
    for group in GROUPS:
        assert _options(group), f"configs/{group} has no options"


def test_schemas_module_does_not_import_hydra():
    code = (
        "import sys, torch_ising.experiment.schemas; "
        "print(any(m.split('.')[0] in ('hydra', 'omegaconf') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_default_config_composes_to_the_schema_defaults(hydra_dir):
    cfg = compose("config")
    assert set(cfg.keys()) >= {"data", "model", "fit", "output", "seed", "name"}
    assert cfg.data._target_.endswith("SyntheticData")
    model = instantiate(cfg.model)
    fit = instantiate(cfg.fit, _convert_="all")
    out = instantiate(cfg.output, _convert_="all")
    assert isinstance(model, schemas.ModelConfig) and model.order == 2 and model.window == 1
    assert isinstance(fit, schemas.FitConfig) and fit.device == "auto" and fit.dtype == "float64"
    assert isinstance(out, schemas.OutputConfig) and out.figures == ["all"]
    # The YAML defaults agree with the dataclass defaults (one source of truth for the values).
    for node, cls in (
        (cfg.model, schemas.ModelConfig),
        (cfg.fit, schemas.FitConfig),
        (cfg.output, schemas.OutputConfig),
    ):
        expected = OmegaConf.to_container(OmegaConf.structured(cls))
        assert OmegaConf.to_container(node) == expected


@pytest.mark.parametrize("option", _options("data"))
def test_every_data_option_composes_and_instantiates(hydra_dir, option):
    cfg = compose("config", overrides=[f"data={option}", "data.path=/x/spikes.npz"] if option != "synthetic" else [])
    source = instantiate(cfg.data, _convert_="all")
    expected = {
        "synthetic": data_mod.SyntheticData,
        "array": data_mod.ArrayData,
        "spike_times": data_mod.SpikeTimesData,
        "nwb": data_mod.NWBData,
    }[option]
    assert type(source) is expected
    assert "T" in source.describe() or "axes" in source.describe()
    # the YAML file carries every key of its schema
    schema = schemas.DATA_SCHEMAS[option]
    assert set(OmegaConf.structured(schema).keys()) == set(cfg.data.keys())


@pytest.mark.parametrize("group", ["model", "fit", "output"])
def test_every_group_option_composes_and_instantiates(hydra_dir, group):
    for option in _options(group):
        cfg = compose("config", overrides=[f"{group}={option}"])
        obj = instantiate(cfg[group], _convert_="all")
        assert type(obj).__name__ == {"model": "ModelConfig", "fit": "FitConfig", "output": "OutputConfig"}[group]
    if group == "model":
        orders = {o: instantiate(compose("config", overrides=[f"model={o}"]).model).order for o in _options("model")}
        assert orders == {"independent": 1, "pairwise": 2, "triplet": 3}


@pytest.mark.parametrize("preset", _options("experiment"))
def test_every_experiment_preset_composes_and_instantiates(hydra_dir, preset):
    cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    assert cfg.name == preset
    source = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model)
    fit = instantiate(cfg.fit, _convert_="all")
    instantiate(cfg.output, _convert_="all")
    assert model.order <= source.N
    if preset == "seed_stationary":
        assert (source.N, source.T, source.R, fit.stationary) == (3, 1, 300, True)
    if preset == "order_selection":
        assert cfg.hydra.sweeper.params["model.order"] == "1,2,3"
    if preset == "large_n_gpu":
        assert (fit.method, fit.device, fit.checkpoint_every > 0) == ("pseudo", "cuda", True)


@pytest.mark.parametrize("launcher", _options("hydra/launcher"))
def test_every_launcher_preset_composes_and_instantiates(hydra_dir, launcher):
    pytest.importorskip(
        {"joblib": "hydra_plugins.hydra_joblib_launcher"}.get(launcher, "hydra_plugins.hydra_submitit_launcher")
    )
    cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    node = cfg.hydra.launcher
    obj = instantiate(node)
    assert (
        type(obj).__name__
        == {
            "joblib": "JoblibLauncher",
            "submitit_local": "LocalLauncher",
            "submitit_slurm": "SlurmLauncher",
        }[launcher]
    )
    if launcher == "submitit_slurm":
        assert node.gpus_per_node == 1 and "partition" in node


def test_misspelt_keys_and_bad_values_are_refused(hydra_dir):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose("config", overrides=["fit.max_iterr=5"])
    with pytest.raises(ConfigCompositionException):
        compose("config", overrides=["data=array", "data.pth=x.npy"])
    with pytest.raises(ConfigCompositionException):
        compose("config", overrides=["model.order=two"])
    cfg = compose("config", overrides=["fit.device=gpu"])
    with pytest.raises(Exception, match="fit.device must be one of auto, cpu, cuda"):
        instantiate(cfg.fit)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: schemas.ModelConfig(order=0), "model.order must be an integer > 0"),
        (lambda: schemas.ModelConfig(window=1.5), "model.window must be an integer > 0"),
        (lambda: schemas.FitConfig(Q_form="tri"), "fit.Q_form must be one of"),
        (lambda: schemas.FitConfig(Q=[0.1, 0.2]), "fit.Q must be one number for Q_form=scalar"),
        (lambda: schemas.FitConfig(Q_form="two_block", Q=[0.1, 0.2, 0.3]), r"fit.Q must be q or \[q1, q2\]"),
        (lambda: schemas.FitConfig(dtype="float16"), "fit.dtype must be one of float64, float32"),
        (lambda: schemas.FitConfig(max_iter=0), "fit.max_iter must be an integer > 0"),
        (lambda: schemas.FitConfig(tol=-1.0), "fit.tol must be a number >= 0"),
        (lambda: schemas.SyntheticDataConfig(N=2, order=3), "data.order must be <= data.N"),
        (lambda: schemas.ArrayDataConfig(counts="round"), "data.counts must be one of refuse, binarise"),
        (lambda: schemas.SpikeTimesDataConfig(window=[1.0, 0.5]), r"data.window must be \[start, stop\]"),
        (lambda: schemas.NWBDataConfig(bin_width=0.0), "data.bin_width must be a number > 0"),
    ],
)
def test_schemas_validate_without_hydra(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_schema_defaults_build_plain_objects():
    fit = schemas.FitConfig(Q_form="two_block", Q=[0.01, 0.001])
    assert fit.Q == [0.01, 0.001]
    cfg = schemas.ExperimentConfig(data=schemas.ArrayDataConfig(path="x.npy"))
    assert cfg.model.order == 2 and cfg.data.path == "x.npy"
    assert np.isclose(schemas.SpikeTimesDataConfig().bin_width, 0.005)
