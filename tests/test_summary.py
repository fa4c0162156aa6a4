"""`make best` and `make studies` as a user reads them (cae/search/summary.py); the storages behind
`make studies` and `make delete` are exercised end to end in tests/test_search.py."""

from __future__ import annotations

from cae.search.summary import summary_lines


def record(**extra: object) -> dict:
    return {
        "study": "s",
        "trial_number": 7,
        "epochs": 12,
        "n_params": 12345,
        "code_values": 256,
        "best_val_loss": 0.00201,
        **extra,
    }


def test_make_best_is_a_few_lines_with_the_test_score_against_every_baseline():
    baselines = {"pca_test_psnr": 26.0, "thumbnail_test_psnr": 24.5, "reference_test_psnr": 22.25}
    lines = summary_lines(
        record(test={"test_psnr": 26.5}, baselines=baselines, registered_model={"name": "s", "version": 3})
    )
    assert lines[0] == "study s: best trial 7, a point the search chose; 12 epochs, 12,345 parameters, code 256 values"
    assert lines[2] == "  test PSNR 26.50 dB; PCA 26.00 (+0.50), thumbnail 24.50 (+2.00), reference CAE 22.25 (+4.25)"
    assert "  registry: models:/s/3" in lines and lines[-1] == "  the whole record: make best JSON=1"
    assert len(lines) <= 8


def test_an_enqueued_best_without_a_test_score_says_so_and_prints_no_score():
    lines = summary_lines(record(enqueued=True))
    assert "a point handed to the study (enqueued)" in lines[0]
    assert not any("test PSNR" in line or "registry" in line for line in lines)
