"""Hyperparameter resolution: numbers pass through, "auto" follows the documented rules, bad values name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tracetune.errors import InvalidInput, invalid_input
from tracetune.train.hyperparams import (
    BASE_LEARNING_RATE,
    RequestedHyperparameters,
    auto_batch_size,
    auto_n_epochs,
    resolve_hyperparameters,
)


@pytest.mark.parametrize(
    ("n_examples", "epochs"),
    [(1, 25), (3, 25), (4, 25), (5, 20), (10, 10), (20, 5), (33, 3), (34, 3), (1000, 3), (8333, 3), (8334, 2),
     (12_501, 1), (100_000, 1)],
)  # fmt: skip
def test_auto_epochs_aim_at_100_to_25000_examples_seen(n_examples, epochs):
    assert auto_n_epochs(n_examples) == epochs


@pytest.mark.parametrize(("n_examples", "size"), [(1, 1), (9, 1), (10, 2), (20, 4), (39, 7), (40, 8), (10_000, 8)])
def test_auto_batch_size(n_examples, size):
    assert auto_batch_size(n_examples) == size


@pytest.mark.parametrize(("batch_size", "multiplier"), [(1, 1.0), (2, 1.0), (3, 1.5), (4, 2.0), (6, 3.0), (8, 3.0)])
def test_auto_learning_rate_follows_the_batch_size(batch_size, multiplier):
    hp = resolve_hyperparameters(100, batch_size=batch_size)
    assert hp.learning_rate_multiplier == multiplier and hp.learning_rate == pytest.approx(
        multiplier * BASE_LEARNING_RATE
    )
    assert (
        resolve_hyperparameters(100, batch_size=batch_size, learning_rate_multiplier=0.5).learning_rate_multiplier
        == 0.5
    )


def test_all_auto_for_the_calculator_set():
    hp = resolve_hyperparameters(20)
    assert hp.as_dict() == {
        "n_epochs": 5,
        "batch_size": 4,
        "learning_rate_multiplier": 2.0,
        "learning_rate": 2 * BASE_LEARNING_RATE,
    }
    assert resolve_hyperparameters(3, batch_size=8).learning_rate_multiplier == 1.5  # the batch as resolved: 3


def test_explicit_values_pass_through():
    hp = resolve_hyperparameters(20, n_epochs=3, batch_size=4, learning_rate_multiplier=2)
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier) == (3, 4, 2.0)
    assert hp.learning_rate == pytest.approx(2 * BASE_LEARNING_RATE)
    assert resolve_hyperparameters(3, batch_size=8).batch_size == 3  # never more than the examples
    assert resolve_hyperparameters(20, n_epochs=4.0).n_epochs == 4  # JSON may carry 4.0


def test_a_request_object_keeps_auto_and_numbers_for_the_recipe():
    requested = RequestedHyperparameters.model_validate({"n_epochs": 2.0, "batch_size": "auto"})
    assert requested.model_dump() == {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto"}
    assert resolve_hyperparameters(20, **requested.model_dump()).n_epochs == 2
    assert RequestedHyperparameters().model_dump() == dict.fromkeys(
        ("n_epochs", "batch_size", "learning_rate_multiplier"), "auto"
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_epochs": 0}, "hyperparameters.n_epochs"),
        ({"n_epochs": 2.5}, "hyperparameters.n_epochs"),
        ({"n_epochs": "many"}, "hyperparameters.n_epochs"),
        ({"batch_size": True}, "hyperparameters.batch_size"),
        ({"batch_size": 1000}, "hyperparameters.batch_size"),
        ({"learning_rate_multiplier": -1}, "hyperparameters.learning_rate_multiplier"),
        ({"learning_rate_multiplier": float("nan")}, "hyperparameters.learning_rate_multiplier"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as err:
        resolve_hyperparameters(20, **kwargs)
    assert err.value.field == field
    with pytest.raises(ValidationError) as refused:  # the same check when a request names them
        RequestedHyperparameters.model_validate(kwargs)
    assert invalid_input(refused.value).field == field.removeprefix("hyperparameters.")
    assert invalid_input(refused.value).code == "invalid_value"


def test_unknown_and_empty():
    with pytest.raises(ValidationError) as err:
        RequestedHyperparameters.model_validate({"epochs": 3})
    assert invalid_input(err.value).field == "epochs"
    with pytest.raises(InvalidInput):
        resolve_hyperparameters(0)


def test_a_validation_set_buys_more_smaller_steps_and_each_auto_value_says_why():
    plain = resolve_hyperparameters(36)
    assert (plain.n_epochs, plain.batch_size) == (3, 7)
    validated = resolve_hyperparameters(36, validated=True)  # best epoch kept, early stopping: steps are cheap
    assert validated.batch_size == 4 and validated.n_epochs == 17  # 9 steps an epoch, at least 150 steps
    assert validated.learning_rate_multiplier == 2.0
    assert validated.reasons["n_epochs"].startswith("at least 150 steps (9 per epoch)")
    assert set(validated.reasons) == {"n_epochs", "batch_size", "learning_rate_multiplier"}
    assert resolve_hyperparameters(5000, validated=True).n_epochs == 3  # big sets take enough steps anyway
    assert resolve_hyperparameters(4, validated=True).n_epochs == 25  # never more than the auto cap
    chosen = resolve_hyperparameters(36, n_epochs=2, batch_size=8, validated=True)
    assert (chosen.n_epochs, chosen.batch_size) == (2, 8) and set(chosen.reasons) == {"learning_rate_multiplier"}
    assert "reasons" not in chosen.as_dict()
