"""polytask: one neural network, several prediction tasks, balanced training.

>>> import polytask
>>> model = polytask.fit(df, tasks=["hospdead:binary", "slos:regression"], epochs=30)
>>> model.predict(new_rows)            # a DataFrame, one column per task
>>> model.evaluate(labelled_rows)      # {task: {metric: value, "n": rows}}
>>> model.save("runs/support2"); polytask.load("runs/support2")
"""

from polytask.api import build_config, fit, load
from polytask.errors import PolytaskError
from polytask.model import MultiTaskModel
from polytask.version import __version__

__all__ = ["MultiTaskModel", "PolytaskError", "__version__", "build_config", "fit", "load"]
