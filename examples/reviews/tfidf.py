"""TF-IDF baselines for the reviews example, on the same train and test files: logistic
regression for rating and condition, ridge regression on log1p(usefulCount) for it.

    .venv/bin/python examples/reviews/tfidf.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge

here = Path(__file__).parent
train = pd.read_csv(here / "data" / "train.csv")
test = pd.read_csv(here / "data" / "test.csv")
vec = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2))
xtr, xte = vec.fit_transform(train["review"]), vec.transform(test["review"])
for task in ("rating", "condition"):
    clf = LogisticRegression(max_iter=2000, C=5.0).fit(xtr, train[task])
    print(f"{task} accuracy {np.mean(clf.predict(xte) == test[task].to_numpy()):.3f}")
ridge = Ridge(alpha=1.0).fit(xtr, np.log1p(train["usefulCount"]))
mae = np.mean(np.abs(np.expm1(ridge.predict(xte)) - test["usefulCount"].to_numpy()))
print(f"usefulCount MAE {mae:.2f}")
