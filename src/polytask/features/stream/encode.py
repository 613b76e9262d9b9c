"""A fitted :class:`~polytask.features.preprocess.Preprocessor` applied to Arrow tables:
the same numbers ``Preprocessor.transform`` gives the same rows as a DataFrame, computed
from Arrow and numpy (the streamed training path never builds a DataFrame of features;
a text column's strings go to its tokenizer as Python strings, as they must)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from polytask.errors import PolytaskError
from polytask.features.preprocess import FeatureTensors, Preprocessor
from polytask.features.stream import arrow


class ArrowEncoder:
    """``encode(table)``: an Arrow table's feature columns as the network's inputs."""

    def __init__(self, pre: Preprocessor):
        if pre.images:
            raise PolytaskError(
                f"image column '{pre.images[0].name}' cannot be streamed yet; train on a "
                "table that fits in memory (data.streaming: false)"
            )
        handled = {
            *(c.name for c in pre.numeric),
            *(c.name for c in pre.categorical),
            *(c.name for c in pre.text),
            *(c.name for c in pre.bags),
        }
        other = [c for c in pre.columns if c not in handled]
        if other:  # a column kind this encoder does not know: never encode it wrongly
            raise PolytaskError(
                f"feature column '{other[0]}' is of a kind that cannot be streamed yet; train "
                "on a table that fits in memory (data.streaming: false)"
            )
        self.pre = pre
        self.lookups = [arrow.Lookup(c.vocab) for c in pre.categorical]

    @property
    def columns(self) -> list[str]:
        return self.pre.columns

    def encode(self, table: pa.Table) -> FeatureTensors:
        missing = [c for c in self.pre.columns if c not in table.column_names]
        if missing:
            raise PolytaskError(
                f"feature column '{missing[0]}' is missing from the data; the model needs "
                "every feature it was trained on"
            )
        n = table.num_rows
        pre = self.pre
        parsed = [
            (arrow.numeric if col.kind == "numeric" else arrow.boolean)(
                arrow.plain(table[col.name]), col.name
            )
            for col in pre.numeric
        ]
        num = pre.numeric_block(parsed, n)
        cat = np.empty((n, len(pre.categorical)), dtype=np.int64)
        for i, (ccol, lookup) in enumerate(zip(pre.categorical, self.lookups, strict=True)):
            values = arrow.plain(table[ccol.name])
            if ccol.buckets:
                cat[:, i] = arrow.hashed_codes(values, ccol.name, ccol.buckets)
            else:
                cat[:, i] = lookup.codes(values)
        extra: dict[str, torch.Tensor] = {}
        for tcol in pre.text:
            import pandas as pd  # the tokenizer takes Python strings

            texts = pd.Series(arrow.plain(table[tcol.name]).to_pylist(), dtype=object)
            extra[tcol.name] = torch.from_numpy(tcol.transform(texts))
        for bag in pre.bags:
            extra[bag.name] = torch.from_numpy(bag.codes(arrow.plain(table[bag.name]).to_pylist()))
        return FeatureTensors(torch.from_numpy(num), torch.from_numpy(cat), extra)
