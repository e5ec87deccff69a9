"""The scikit-learn estimator: conventions, known answers, and scikit-learn's own checks."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from ocp_resnet import OCPResNetClassifier, Problem, load_dataset, make_solver


def test_fit_matches_a_plain_solve_and_predicts_string_labels():
    ds = load_dataset("moons", n_samples=60)
    labels = np.array(["left", "right"])[ds.y]
    clf = OCPResNetClassifier(blocks=3, gamma=0.1, weight_decay=1e-3, random_state=2).fit(ds.X, labels)
    # the estimator solves with the factory's solver (method "auto"), from init seed random_state
    sol = make_solver().solve(Problem.build(ds, blocks=3, width=2, loss="mse", gamma=0.1, weight_decay=1e-3),
                              "random", 2)
    assert clf.solution_.objective == sol.objective  # the same problem, the same init seed
    assert clf.n_iter_ == sol.iterations and clf.n_features_in_ == 2
    pred = clf.predict(ds.X)
    assert set(pred) <= {"left", "right"}
    assert clf.score(ds.X, labels) == pytest.approx(sol.evaluation.stage_accuracy[-1])
    proba = clf.predict_proba(ds.X)
    assert proba.shape == (60, 2) and np.allclose(proba.sum(1), 1)
    assert np.array_equal(clf.classes_[np.argmax(proba, 1)], pred)
    assert isinstance(clf.vanished_blocks_, list) and isinstance(clf.collapsed_, bool)


def test_params_clone_and_cross_validation():
    clf = OCPResNetClassifier(blocks=2, gamma=0.3, loss="sce")
    assert clf.get_params()["gamma"] == 0.3
    c2 = clone(clf).set_params(gamma=1.0, restarts=2)
    assert c2.gamma == 1.0 and clf.gamma == 0.3
    ds = load_dataset("circles", n_samples=60)
    scores = cross_val_score(OCPResNetClassifier(blocks=2, loss="sce", tol=1e-6), ds.X, ds.y, cv=3)
    assert scores.shape == (3,) and np.all((0 <= scores) & (scores <= 1))


def test_restarts_keep_the_best():
    ds = load_dataset("spirals", n_samples=40)
    clf = OCPResNetClassifier(blocks=3, restarts=3, random_state=1).fit(ds.X, ds.y)
    assert [r["init_seed"] for r in clf.restarts_] == [1, 2, 3]
    assert clf.solution_.objective == min(r["objective"] for r in clf.restarts_ if r["status"] == "success")


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="one class"):
        OCPResNetClassifier(blocks=1).fit(np.ones((5, 2)), np.zeros(5))


@pytest.mark.slow  # 24 s on an idle 2-core machine, about 2 min loaded
def test_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = check_estimator(OCPResNetClassifier(blocks=2, max_iter=200, tol=1e-6), on_fail=None)
    failed = [r["check_name"] for r in res if r["status"] == "failed"]
    assert not failed, failed


def test_grid_search_in_a_pipeline_separates_noisy_circles_on_held_out_data():
    """Pipeline(StandardScaler, OCPResNetClassifier) in GridSearchCV over γ and depth, refit on the
    whole training split: held-out accuracy ≥ 0.95 on two noisy circles (which a linear model cannot
    separate: chance level), and the selected depth is one of the grid's."""
    from sklearn.datasets import make_circles
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_circles(n_samples=240, noise=0.08, factor=0.5, random_state=3)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    pipe = make_pipeline(StandardScaler(), OCPResNetClassifier(tol=1e-6))
    grid = {"ocpresnetclassifier__gamma": [0.0, 1.0], "ocpresnetclassifier__blocks": [3, 6]}
    search = GridSearchCV(pipe, grid, cv=3, refit=True).fit(Xtr, ytr)
    assert search.best_params_["ocpresnetclassifier__blocks"] in (3, 6)
    assert search.score(Xte, yte) >= 0.95
    clf = search.best_estimator_[-1]
    assert not clf.collapsed_


def test_predict_proba_follows_the_loss():
    """mse: the head's regression of the one-hot targets, made a distribution without reordering;
    sce/bce: softmax/sigmoid of the logits. Probabilities sum to one and agree with predict."""
    ds = load_dataset("moons", n_samples=80, noise=0.1)
    for loss in ("mse", "sce", "bce"):
        clf = OCPResNetClassifier(blocks=2, loss=loss, tol=1e-6).fit(ds.X, ds.y)
        proba = clf.predict_proba(ds.X)
        assert np.all(proba >= 0) and np.allclose(proba.sum(axis=1), 1.0)
        assert np.array_equal(clf.classes_[np.argmax(proba, axis=1)], clf.predict(ds.X))
        z = clf._outputs(ds.X)
        if loss == "mse":  # non-negative outputs are only normalised (≈ unchanged where they sum to ~1)
            ok = np.all(z >= 0, axis=1)
            assert ok.sum() > 10
            assert np.allclose(proba[ok], z[ok] / z[ok].sum(axis=1, keepdims=True), atol=1e-9)
        elif loss == "bce":
            assert np.allclose(proba[:, 1], 1 / (1 + np.exp(-z[:, 0])))
