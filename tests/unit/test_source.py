"""YAML reading: lines for keys and items, YAML 1.2 floats, no timestamps, duplicate keys refused."""

from pathlib import Path

import pytest

from expdeploy.errors import SpecError
from expdeploy.spec.source import SpecSource, line_of, parse_scalar


def test_keys_and_items_carry_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.yml"
    path.write_text("a: 1\ngrid:\n  lr:\n    - 0.1\n    - 0.2\n")
    doc = SpecSource(path).documents[0]
    assert line_of(doc, "grid") == 2
    assert line_of(doc["grid"], "lr") == 3
    assert line_of(doc["grid"]["lr"], 1) == 5


def test_scientific_floats_and_dates_are_typed_like_yaml_1_2(tmp_path: Path) -> None:
    path = tmp_path / "a.yml"
    path.write_text("lr: 1e-4\nbig: 3E5\nday: 2024-01-02\nname: 1e-4x\n")
    doc = SpecSource(path).documents[0]
    assert doc == {"lr": 0.0001, "big": 300000.0, "day": "2024-01-02", "name": "1e-4x"}


def test_duplicate_keys_are_an_error_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.yml"
    path.write_text("grid:\n  lr: [1]\n  lr: [2]\n")
    with pytest.raises(SpecError) as info:
        SpecSource(path).documents  # noqa: B018
    assert str(info.value.where) == f"{path}:3"
    assert "first on line 2" in info.value.message


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.yml"
    path.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(SpecError) as info:
        SpecSource(path).documents  # noqa: B018
    assert info.value.where is not None and info.value.where.line in (2, 3)
    assert "not valid YAML" in info.value.message


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.1", 0.1), ("3", 3), ("true", True), ("null", None), ("1e-3", 0.001), ("abc", "abc"),
     ("a: b", "a: b"), ("#x", "#x"), ("2024-01-01", "2024-01-01")],
)
def test_command_line_scalars_are_typed_like_spec_values(text: str, value: object) -> None:
    assert parse_scalar(text) == value
    assert type(parse_scalar(text)) is type(value)
