"""The estimators of the single-task gradient-boosting baseline (``Task.baseline_estimator``).

scikit-learn's ensemble module costs over a second to import and only the baseline
(``polytask demo``, the quality benchmarks) uses it, so it is imported on first use rather
than with every task kind.
"""

from __future__ import annotations

from typing import Any


def hist_gbm_classifier(categorical: list[bool], seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier  # slow import: see above

    return HistGradientBoostingClassifier(categorical_features=categorical, random_state=seed)


def hist_gbm_regressor(categorical: list[bool], seed: int, loss: str = "squared_error") -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor  # slow import: see above

    return HistGradientBoostingRegressor(
        loss=loss, categorical_features=categorical, random_state=seed
    )
