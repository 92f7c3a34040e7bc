"""Config loading: YAML + overrides, and errors that name the key before any work is done."""

from __future__ import annotations

import pytest

from sempairs.config import ConfigError, load_config, parse_overrides


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: a\ntrain:\n  epochs: 3\ndata:\n  size: 16\n")
    cfg = load_config(path, ["train.batch_size=64", "optim.lr=0.1", "pairs.source=labels", "pairs.per_class=5"])
    assert (cfg.name, cfg.train.epochs, cfg.train.batch_size, cfg.optim.lr) == ("a", 3, 64, 0.1)
    assert cfg.pairs.source == "labels" and cfg.pairs.per_class == 5
    assert cfg.augment.size == 16  # follows the data resolution
    assert cfg.method.name == "simclr" and cfg.method.temperature == 0.2


def test_parse_overrides_types():
    assert parse_overrides(["a.b=1", "a.c=0.5", "d=true", "e=[1, 2]", "f=text"]) == {
        "a": {"b": 1, "c": 0.5}, "d": True, "e": [1, 2], "f": "text"}


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["train.epochz=3"], "train.epochz: unknown key"),
        (["train.epochs=-1"], "train.epochs: Input should be greater than 0"),
        (["backbone.name=resnet1000"], "backbone.name"),
        (["pairs.source=file"], "pairs.file is needed"),
        (["augment.flip_p=2"], "augment.flip_p"),
        (["method.temprature=0.1"], "temprature: unknown key"),
        (["nonsense"], "is not key=value"),
    ],
)
def test_bad_values_name_the_key(overrides, words):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(None, overrides)
    assert words in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "typo.yaml").write_text("trian:\n  epochs: 1\n")
    with pytest.raises(ConfigError, match="trian: unknown key"):
        load_config(tmp_path / "typo.yaml")


def test_data_size_is_bounded_and_resize_is_one_of_its_rules():
    """A typo of data.size=100000 would decode 30 GB per image: refused by the config, naming the key and the bound."""
    with pytest.raises(ConfigError, match=r"data\.size.*less than or equal to 4096"):
        load_config(None, ["data.size=100000"])
    with pytest.raises(ConfigError, match=r"data\.resize.*'squash' or 'short_side_center_crop'"):
        load_config(None, ["data.resize=crop"])
    cfg = load_config(None, ["data.size=224", "data.resize=short_side_center_crop", "data.decode_workers=2"])
    assert (cfg.data.size, cfg.data.resize, cfg.data.decode_workers) == (224, "short_side_center_crop", 2)
    assert load_config(None, []).data.resize == "squash"
