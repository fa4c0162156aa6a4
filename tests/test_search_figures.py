"""cae.search.figures: Optuna's figures of a study, whatever config the caller holds."""

import optuna
import pytest

from cae.search.figures import save_optuna_plots


def two_objective_study(recorded: list[str] | None) -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "minimize"])
    if recorded:
        study.set_user_attr("objectives", recorded)
    dist = {"model.filters": optuna.distributions.IntDistribution(4, 64)}
    for i, (mse, size) in enumerate([(0.010, 64), (0.006, 256), (0.004, 512), (0.005, 768), (0.002, 1024)]):
        study.add_trial(
            optuna.trial.create_trial(params={"model.filters": 4 + 8 * i}, distributions=dist, values=[mse, size])
        )
    return study


@pytest.mark.parametrize("recorded", [["best_val_loss", "code_values"], None])
def test_a_two_objective_front_is_drawn_even_when_the_caller_names_one_objective(tmp_path, recorded):
    # `make report STUDY=cae-pareto` reads the default experiment's config (one objective): the
    # front plot takes the study's own record, or numbered names when it has none.
    saved = save_optuna_plots(two_objective_study(recorded), tmp_path, ["best_val_loss"])
    assert tmp_path / "pareto_front.png" in saved
    assert (tmp_path / "pareto_front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
