"""``sempairs config show``: a run's full resolved config, each value with where it came from.

One line per key, ``optim.lr = 1.0   # method recipe (byol)``; the sources are ``default``, ``method
recipe (NAME)``, ``config file PATH``, ``grid base``, ``grid axis AXIS``, ``grid (where its runs go)``,
``command line`` and ``derived from other keys`` (see :func:`sempairs.config.sources`). The lines do
not depend on the terminal's width.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
import yaml

from sempairs.cli.common import console
from sempairs.errors import InputError

app = typer.Typer(no_args_is_help=True, help="The resolved run config and where each value comes from.")

PAD = 40  # values are aligned to this column (longer lines are not padded)
RUN_RECORD = "the run's config.yaml"


def _text(value) -> str:
    """``value`` as YAML writes it in flow style on one line (what a ``key=value`` override takes)."""
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf).removesuffix("\n").removesuffix("\n...").strip()


def config_lines(cfg, where: dict[str, str]) -> list[str]:
    """``key = value   # source`` for each key of ``cfg``, in the config's order."""
    from sempairs.config import flatten

    return [f"{f'{k} = {_text(v)}':<{PAD}}  # {where[k]}" for k, v in flatten(cfg.model_dump(mode="json")).items()]


def _experiment_lines(path: Path, overrides: list[str], cell: Optional[str]) -> list[str]:
    """One cell's config (``cell``: its number from 1, or its id), or all cells: the lines they share, then each
    cell's own."""
    from sempairs.config import COMMAND_LINE, load_layers, parse_overrides, sources
    from sempairs.experiments.grid import base_over_recipes, expand, load_experiment

    exp = load_experiment(path)
    extra = parse_overrides(overrides)
    cells = expand(exp)
    layers = {c.id: [*c.layers, (COMMAND_LINE, extra)] if extra else list(c.layers) for c in cells}
    if cell is not None:
        chosen = [c for i, c in enumerate(cells, 1) if cell in (str(i), c.id)]
        if not chosen:
            raise InputError(f"{path} has no cell {cell!r}. Fix: give a number from 1 to {len(cells)} or a cell id, "
                             f"e.g. {cells[0].id}")
        cells = chosen
    configs = {c.id: load_layers(layers[c.id]) for c in cells}
    shown = {c.id: config_lines(configs[c.id], sources(configs[c.id], layers[c.id])) for c in cells}
    notice = base_over_recipes(cells)
    head = [f"# {notice}"] if notice else []
    if len(cells) == 1:
        return [*head, f"# experiment {exp.name}, cell {cells[0].id}", *shown[cells[0].id]]
    common = set.intersection(*(set(lines) for lines in shown.values()))
    out = [*head, f"# experiment {exp.name}: {len(cells)} cells (--cell N shows one whole)",
           *(f"# {i:>3}  {c.id}" for i, c in enumerate(cells, 1)), "# the same in every cell:",
           *(line for line in shown[cells[0].id] if line in common)]
    for i, c in enumerate(cells, 1):
        out += [f"# cell {i}: {c.id}", *(line for line in shown[c.id] if line not in common)]
    return out


def _run_lines(run_dir: Path, overrides: list[str]) -> list[str]:
    """The config a finished (or started) run saved, credited as far as a saved config allows."""
    from sempairs.config import RunConfig, read_yaml_mapping, saved_sources, validate
    from sempairs.train.rundir import CONFIG

    if overrides:
        raise InputError(f"{run_dir} is a run: it ran with its saved config, which overrides do not change. Fix: drop "
                         f"{' '.join(overrides)}, or show a config file with them")
    saved = run_dir / CONFIG
    if not saved.is_file():
        raise InputError(f"{run_dir} is a folder without {CONFIG}. Fix: give a run folder, a run config or an experiment YAML")
    cfg = validate(RunConfig, read_yaml_mapping(saved, "config", "sections data, pairs"), str(saved))
    note = (f"# run {run_dir} ({CONFIG} records values, not their sources: a value equal to the default or the "
            f"method's recipe is credited to it, any other to {RUN_RECORD})")
    return [note, *config_lines(cfg, saved_sources(cfg, RUN_RECORD))]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def show(
    ctx: typer.Context,
    target: Optional[str] = typer.Argument(None, help="Run YAML, experiment YAML, or run folder (defaults if omitted)."),
    cell: Optional[str] = typer.Option(None, "--cell", help="For an experiment: one cell, by number (from 1) or id."),
) -> None:
    """Print the resolved config with each value's source: sempairs config show [CONFIG|RUN_DIR] [key=value ...]."""
    from sempairs.config import config_layers, load_layers, read_yaml_mapping, sources

    overrides = list(ctx.args)
    if target is not None and "=" in target and not Path(target).exists():
        overrides.insert(0, target)  # no file, only overrides
        target = None
    path = None if target is None else Path(target)
    if path is not None and path.is_dir():
        lines = _run_lines(path, overrides)
    elif path is not None and "axes" in read_yaml_mapping(path, "config", "sections data, pairs"):
        lines = _experiment_lines(path, overrides, cell)
    else:
        if cell is not None:
            raise InputError(f"--cell is for experiment YAMLs (with axes); {target or 'the defaults'} is a run config")
        layers = config_layers(path, overrides)
        cfg = load_layers(layers)
        lines = config_lines(cfg, sources(cfg, layers))
    console.print("\n".join(lines), markup=False, highlight=False)
