"""Hydra multirun override syntax."""

import pytest

from expdeploy.errors import BadInput
from expdeploy.spec.overrides import parse_overrides


def one(text: str):  # type: ignore[no-untyped-def]
    (override,) = parse_overrides([text])
    return override


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("lr=0.1,0.01", (0.1, 0.01)),
        ("seed=range(0,3)", (0, 1, 2)),
        ("seed=range(3)", (0, 1, 2)),
        ("seed=range(0,10,4)", (0, 4, 8)),
        ("x=range(0,1,0.25)", (0.0, 0.25, 0.5, 0.75)),
        ("opt=choice(sgd,adam)", ("sgd", "adam")),
        ("model.depth=4", (4,)),
        ("layers=[64,64],[128]", ([64, 64], [128])),
        ("name='a,b'", ("a,b",)),
        ('name="x y",z', ("x y", "z")),
        ("flag=true,false", (True, False)),
        ("tag=", ("",)),
        ("cmd=$(touch x); rm -rf ~", ("$(touch x); rm -rf ~",)),
    ],
)
def test_values(text: str, values: tuple[object, ...]) -> None:
    assert one(text).values == values
    assert one(text).op == "set"


def test_add_force_and_delete() -> None:
    assert one("+new=1").op == "add"
    assert one("++lr=1").op == "force"
    removed = one("~seed")
    assert (removed.op, removed.name, removed.values) == ("delete", "seed", ())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", "key=value"),
        ("1x=3", "not a valid parameter name"),
        ("run_dir=3", "reserved"),
        ("x=range(a,b)", "range()"),
        ("x=range(3,0)", "no values"),
        ("x=range(0,3,0)", "zero"),
        ("x=[1,2", "unbalanced"),
    ],
)
def test_bad_overrides_are_bad_input(text: str, message: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_overrides([text])
    assert message in info.value.message
    assert info.value.exit_code == 2


def test_same_parameter_twice_is_refused() -> None:
    with pytest.raises(BadInput, match="twice"):
        parse_overrides(["lr=1", "lr=2"])
