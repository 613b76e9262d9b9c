"""Two classification tasks on one input with the summed loss: the simplest multi-task model.

Wine recipes (scikit-learn's bundled wine data): predict the cultivar (3 classes) and
whether the wine is strong (alcohol above the median) from the other 12 measurements."""

from sklearn.datasets import load_wine

import polytask

wine = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
wine["strong"] = (wine["alcohol"] > wine["alcohol"].median()).map({True: "yes", False: "no"})
wine = wine.drop(columns="alcohol").sample(frac=1.0, random_state=0)  # shuffle the rows
train, test = wine.iloc[:140], wine.iloc[140:]

model = polytask.fit(
    train,
    tasks=["cultivar:multiclass", "strong:binary"],
    balancing="ew",  # the plain sum of the two task losses
    epochs=60,
    hidden=[32],
    seed=0,
)
for task, metrics in model.evaluate(test).items():
    print(task, {k: round(v, 3) for k, v in metrics.items() if v is not None})
print(model.predict(test.head(3)))
