"""Where each value of a run config comes from (`sempairs config show`), the grid's note when its base
overrides a method's recipe, and the shipped grids training each method on its own recipe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sempairs.cli import app
from sempairs.config import ConfigError, RunConfig, config_layers, load_config, load_layers, sources
from sempairs.experiments import grid
from sempairs.experiments.grid import base_over_recipes, expand, load_experiment

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(\S+) = (.*?) +# (.*)$")


def show(*args) -> dict[str, tuple[str, str]]:
    """``sempairs config show ARGS`` as key -> (value, source), from its output lines (comment lines skipped)."""
    result = CliRunner().invoke(app, ["config", "show", *map(str, args)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("#")]
    assert all(LINE.match(line) for line in lines), lines
    return {m[1]: (m[2], m[3]) for m in map(LINE.match, lines)}


def test_each_value_is_credited_to_the_layer_that_set_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"method": {"name": "byol"}, "optim": {"weight_decay": 0.0}, "data": {"size": 16}}))
    layers = config_layers(path, ["optim.warmup_epochs=3", "train.epochs=2"])
    cfg = load_layers(layers)
    where = sources(cfg, layers)
    assert list(where) == list(show(path, "optim.warmup_epochs=3", "train.epochs=2"))  # every key, in order
    file = f"config file {path}"
    assert where["method.name"] == where["optim.weight_decay"] == where["data.size"] == file
    assert where["optim.warmup_epochs"] == where["train.epochs"] == "command line"
    assert where["optim.lr"] == where["optim.name"] == "method recipe (byol)"
    assert where["optim.momentum"] == where["train.batch_size"] == where["method.proj_dim"] == "default"
    assert where["augment.size"] == "derived from other keys"  # follows data.size
    assert set(where) == set(sources(load_config(path), config_layers(path)))


def test_config_show_names_the_sources_of_a_file_and_the_command_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method: {name: vicreg}\ntrain: {epochs: 3}\n")
    shown = show(path, "optim.lr=0.5")
    assert shown["optim.lr"] == ("0.5", "command line")
    assert shown["optim.weight_decay"] == ("0.0001", "method recipe (vicreg)")  # solo-learn's vicreg.yaml
    assert shown["train.epochs"] == ("3", f"config file {path}")
    assert shown["train.batch_size"] == ("512", "default")
    assert show("method.name=byol")["optim.lr"] == ("1.0", "method recipe (byol)")  # overrides only, no file


def test_method_comparison_trains_byol_and_vicreg_on_their_own_recipes():
    """The published comparison: solo-learn's CIFAR recipes, lr 1.0 (BYOL) and 0.3 (VICReg), not SimCLR's 0.4."""
    path = REPO / "configs" / "exp_method_comparison.yaml"
    cells = expand(load_experiment(path))
    number = {c.config.method.name: i for i, c in reversed(list(enumerate(cells, 1)))}
    expected = {"simclr": ("0.4", "1.0e-05"), "byol": ("1.0", "1.0e-05"), "vicreg": ("0.3", "0.0001")}
    for method, (lr, decay) in expected.items():
        shown = show(path, "--cell", number[method])
        assert shown["optim.lr"] == (lr, f"method recipe ({method})")
        assert shown["optim.weight_decay"] == (decay, f"method recipe ({method})")
        assert shown["optim.warmup_epochs"] == ("10.0", "grid base")
        assert shown["method.name"] == (method, "grid axis method.name")
        assert shown["pairs.source"][1] == "grid axis pairs" and shown["name"][1] == "grid (where its runs go)"
    result = CliRunner().invoke(app, ["config", "show", str(path)])  # every cell: what they share, then each one's own
    assert result.exit_code == 0 and "optim.lr = 1.0" in result.output and "18 cells" in result.output
    assert base_over_recipes(cells) is None


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("exp_*.yaml")), ids=lambda p: p.name)
def test_no_shipped_grid_overrides_the_recipe_of_a_method_it_varies(path):
    exp = load_experiment(path)
    notice = base_over_recipes(expand(exp))
    if any(axis in ("method", "method.name") for axis in exp.axes):  # a grid varying the method itself
        assert notice is None, notice
    elif notice:  # a one-method grid choosing its optimiser on purpose: the note names it
        assert f"recipe of {exp.base['method']['name']}" in notice


def test_a_grid_whose_base_overrides_recipes_says_so_once_before_it_starts(tmp_path, monkeypatch):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "out_dir": str(tmp_path), "axes": {"method.name": ["simclr", "byol", "vicreg"]},
                                    "base": {"optim": {"name": "lars", "lr": 0.4, "weight_decay": 1.0e-5}}}))
    exp = load_experiment(path)
    logged = []

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(grid, "run_cell", stop)
    with pytest.raises(KeyboardInterrupt):
        grid.run_grid(exp, log=logged.append)
    assert logged[0] == (
        "note: the grid's base sets optim.lr=0.4, optim.weight_decay=1e-05 over the optimiser recipe of byol "
        "(optim.lr=1.0); vicreg (optim.lr=0.3, optim.weight_decay=0.0001): those cells train with the base's values, "
        "not their method's (remove the keys from base to use the recipes; `sempairs config show` names where every "
        "value comes from)")
    assert sum("note:" in line for line in logged) == 1


def test_a_finished_run_is_shown_from_its_saved_config(tmp_path):
    cfg = load_config(None, ["method.name=byol", "optim.lr=0.5", "train.epochs=3"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    shown = show(tmp_path)
    assert shown["optim.lr"] == ("0.5", "the run's config.yaml") and shown["train.epochs"] == ("3", "the run's config.yaml")
    assert shown["optim.weight_decay"] == ("1.0e-05", "method recipe (byol)") and shown["knn.k"] == ("200", "default")
    result = CliRunner().invoke(app, ["config", "show", str(tmp_path), "train.epochs=4"])
    assert result.exit_code == 2 and "overrides do not change" in result.output


def test_compile_auto_is_refused_in_new_configs_and_read_as_off_in_saved_ones():
    with pytest.raises(ConfigError, match="train.compile: auto is removed.*set train.compile to true or false"):
        load_config(None, ["train.compile=auto"])
    assert RunConfig.model_validate({"train": {"compile": "auto"}}).train.compile is False  # what auto always did
    assert load_config(None, ["train.compile=true"]).train.compile is True
