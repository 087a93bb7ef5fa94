"""The notebook API: `expdeploy.load(EXP_DIR)` reads an experiment's runs (the rows `expdeploy
results` shows) into `Runs`, a sequence of `Row` records with `.to_pandas()`."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, overload

from expdeploy.results import Row, collect, metric_names

if TYPE_CHECKING:
    import pandas

FIXED_COLUMNS = ("run", "state", "duration", "tags")


class Runs(Sequence[Row]):
    """The runs of one experiment, in ledger order; slicing keeps a `Runs`."""

    def __init__(self, rows: Iterable[Row], exp_dir: Path | None = None) -> None:
        self._rows = tuple(rows)
        self.exp_dir = exp_dir

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> Runs: ...

    def __getitem__(self, index: int | slice) -> Row | Runs:
        if isinstance(index, slice):
            return Runs(self._rows[index], self.exp_dir)
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def __repr__(self) -> str:
        where = f" of {self.exp_dir}" if self.exp_dir else ""
        return f"<Runs: {len(self)} run{'s' if len(self) != 1 else ''}{where}>"

    def to_pandas(self) -> pandas.DataFrame:
        """One row per run: `run`, `state`, `duration` (seconds), `tags`, then each parameter and
        each metric's final value as a column (a metric named like a parameter is `metrics.NAME`)."""
        try:
            import pandas
        except ImportError as exc:
            raise ImportError("Runs.to_pandas() needs pandas: pip install 'expdeploy[pandas]'",
                              name="pandas") from exc
        params: list[str] = []
        for row in self._rows:
            params += [p for p in row.params if p not in params]
        taken = {*FIXED_COLUMNS, *params}
        records = [{"run": row.name, "state": row.state, "duration": row.duration, "tags": row.tags,
                    **row.params, **{_metric_column(m, taken): v for m, v in row.metrics.items()}}
                   for row in self._rows]
        metrics = [_metric_column(m, taken) for m in metric_names(self._rows)]
        return pandas.DataFrame(records, columns=[*FIXED_COLUMNS, *params, *metrics])


def _metric_column(name: str, taken: set[str]) -> str:
    return f"metrics.{name}" if name in taken else name


def load(exp_dir: str | Path, goal: str = "min") -> Runs:
    """The runs of the experiment in `exp_dir` (the directory `expdeploy run` made, e.g.
    `experiments/NAME`) with their parameters, state, duration, tags and metrics; `goal` (min
    or max) picks each metric's `best`. Works while the experiment runs, also on a target's hosts."""
    from expdeploy.errors import BadInput
    from expdeploy.expdir import find_experiment

    if goal not in ("min", "max"):
        raise BadInput(f"goal {goal!r}", key="goal", hint="min or max")
    found = find_experiment(Path("experiments"), Path(exp_dir))
    from expdeploy.results_fetch import fetch_for

    for note in fetch_for(found)[1]:  # runs on a target's hosts: their metric files come here first
        warnings.warn(note.removeprefix("warning: "), stacklevel=2)
    return Runs(collect(found, goal), found)
