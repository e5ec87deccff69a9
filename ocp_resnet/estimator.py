"""A scikit-learn classifier around the stage-cost solve, so γ and depth can be chosen with
``GridSearchCV`` / ``cross_val_score``::

    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from ocp_resnet import OCPResNetClassifier

    pipe = make_pipeline(StandardScaler(), OCPResNetClassifier())
    grid = {"ocpresnetclassifier__gamma": [0.0, 1.0], "ocpresnetclassifier__blocks": [3, 6]}
    search = GridSearchCV(pipe, grid, cv=3, refit=True).fit(X_train, y_train)
    search.best_params_["ocpresnetclassifier__blocks"]      # the selected depth
    search.score(X_test, y_test)                             # held-out accuracy of the refit model

``fit`` builds the stage-cost problem on (X, y) and solves it (the size-aware solver choice of
:func:`ocp_resnet.make_solver`; best of ``restarts`` initial weights, and a fresh start after a
collapsed solve); the learned attributes end in ``_`` (scikit-learn's convention).

The defaults (MSE, γ = 1, λ = 1e-4, ``collapse_retries=3``) are the winners of the evidence table
in docs/defaults.md (``python benchmarks/defaults_table.py --summary``): over nine standardised
2-D problems with held-out data and three init seeds each, no collapsed result, mean held-out
accuracy 0.870 (``MLPClassifier()``: 0.800), and a vanished block with unchanged held-out
accuracy on 8 of the 9 problems.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ocp_resnet.model import objective as objective_mod

if TYPE_CHECKING:
    from sklearn.utils import Tags

    from ocp_resnet.solvers.base import Method


class OCPResNetClassifier(ClassifierMixin, BaseEstimator):
    """Residual network classifier trained as an optimal control problem (CasADi: Newton or IPOPT).

    Parameters are those of :meth:`ocp_resnet.Problem.build` and :func:`ocp_resnet.make_solver`;
    ``collapse_retries`` bounds the fresh starts after a collapsed solve
    (:class:`~ocp_resnet.analysis.retry.RetryOnCollapse`).
    ``width=None`` uses the number of features (the inputs are zero-padded to ``width``).
    ``random_state`` is the init seed of the first restart (restart j uses random_state + j).

    Attributes after ``fit``: ``classes_``, ``n_features_in_``, ``problem_``, ``solution_``
    (the :class:`~ocp_resnet.Solution`), ``n_iter_`` (IPOPT iterations), ``restarts_`` (one record per restart),
    ``vanished_blocks_``, ``recommended_depth_``, ``collapsed_`` (no better than the best
    linear classifier on the training data).
    """

    def __init__(self, blocks: int = 10, width: int | None = None, branch: str = "single",
                 activation: str = "tanh", step: float = 1.0, loss: str = "mse", gamma: float = 1.0,
                 weight_decay: float = 1e-4, label_smoothing: float = 0.1, method: Method = "auto",
                 tol: float = 1e-8, max_iter: int = 3000, restarts: int = 1, random_state: int = 0,
                 vanish_tol: float = 1e-3, collapse_retries: int = 3):
        self.blocks = blocks
        self.width = width
        self.branch = branch
        self.activation = activation
        self.step = step
        self.loss = loss
        self.gamma = gamma
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.method = method
        self.tol = tol
        self.max_iter = max_iter
        self.restarts = restarts
        self.random_state = random_state
        self.vanish_tol = vanish_tol
        self.collapse_retries = collapse_retries

    def fit(self, X: Any, y: Any) -> OCPResNetClassifier:
        """Build the stage-cost problem on (X, y), solve it (best of ``restarts``) and analyse the solution."""
        from ocp_resnet.analysis.blocks import analyze
        from ocp_resnet.analysis.collapse import collapse_record
        from ocp_resnet.analysis.restarts import solve_restarts
        from ocp_resnet.analysis.retry import RetryOnCollapse
        from ocp_resnet.data.arrays import Dataset
        from ocp_resnet.model.problem import Problem
        from ocp_resnet.solvers import make_solver

        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError("Classifier can't train when only one class is present: give at least two classes")
        width = X.shape[1] if self.width is None else self.width
        data = Dataset(X, y_enc.astype(int), int(self.classes_.size), "fit data")
        self.problem_ = Problem.build(data, blocks=self.blocks, width=width, branch=self.branch,
                                      activation=self.activation, step=self.step, loss=self.loss, gamma=self.gamma,
                                      weight_decay=self.weight_decay, label_smoothing=self.label_smoothing)
        seed = int(self.random_state or 0)
        self.solution_, records = solve_restarts(
            self.problem_, range(seed, seed + int(self.restarts)),
            RetryOnCollapse(make_solver("casadi", method=self.method, tol=self.tol, max_iter=self.max_iter),
                            self.collapse_retries), self.vanish_tol)
        self.restarts_ = [r.to_dict() for r in records]
        self.n_iter_ = self.solution_.iterations
        an = analyze(self.problem_, self.solution_.w, self.vanish_tol)
        self.vanished_blocks_ = an.vanished
        self.recommended_depth_ = an.recommended_depth
        self.collapsed_ = collapse_record(self.problem_, self.solution_.evaluation.final_loss)["collapsed"]
        return self

    def _outputs(self, X: Any) -> np.ndarray:
        """Head outputs ŷ_N, (n_samples, n_outputs)."""
        from ocp_resnet.model import architecture as arch
        from ocp_resnet.model._ops import NUMPY

        check_is_fitted(self, "solution_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        spec, p = self.problem_.spec, self.solution_.weights
        z = arch.stage_outputs(spec, p, arch.trajectory(spec, p, np.ascontiguousarray(X.T), NUMPY), NUMPY)[-1]
        return np.asarray(z).T

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores (n_samples, n_classes); for two classes one score, > 0 meaning ``classes_[1]``."""
        z = self._outputs(X)
        if z.shape[1] == 1:  # bce: the logit
            return z[:, 0]
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities as the loss defines them: the sigmoid of the logit (``bce``), the
        softmax of the head outputs (``ce``, ``sce``). For ``mse`` the head regresses the one-hot
        targets, i.e. estimates P(class | x) by least squares: the outputs are shifted by the
        smallest amount that makes them non-negative and normalised to sum to one, so a well-fit
        output (in [0, 1], summing to ~1) is returned almost unchanged and the ranking of the
        classes (``predict``) is kept."""
        z = self._outputs(X)
        if z.shape[1] == 1:
            z = np.column_stack([np.zeros(len(z)), z[:, 0]])
        if self.problem_.objective.loss == "mse":
            q = z - np.minimum(z.min(axis=1, keepdims=True), 0.0) + 1e-12
            return q / q.sum(axis=1, keepdims=True)
        return objective_mod.softmax(z, axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels."""
        d = self.decision_function(X)
        return self.classes_[(d > 0).astype(int) if d.ndim == 1 else np.argmax(d, axis=1)]

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags
