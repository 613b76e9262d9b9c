"""Three data sources for one model: a patient table, images and a second table.

- data/patients.csv: SUPPORT2 (bundled) -> in-hospital death (binary)
- data/items.npz: single Fashion-MNIST items (Debian's dataset-fashion-mnist) -> class
- data/diabetes.csv: scikit-learn's bundled diabetes table -> disease progression
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes

from polytask.datasets.multi_fashion import CLASSES, load_fashion
from polytask.datasets.support2 import SUPPORT2_FEATURES, load_support2

out = Path(sys.argv[1] if len(sys.argv) > 1 else "data")
out.mkdir(parents=True, exist_ok=True)

patients = load_support2()[[*SUPPORT2_FEATURES, "hospdead"]]
patients.to_csv(out / "patients.csv", index=False)

images, labels = load_fashion("train")
pick = np.random.default_rng(0).choice(len(images), 6000, replace=False)
np.savez_compressed(out / "items.npz", image=images[pick], item=np.array(CLASSES)[labels[pick]])

diabetes = load_diabetes(as_frame=True, scaled=False).frame.rename(
    columns={"target": "progression"}
)
diabetes.to_csv(out / "diabetes.csv", index=False)
for name in ("patients.csv", "items.npz", "diabetes.csv"):
    print(out / name)
