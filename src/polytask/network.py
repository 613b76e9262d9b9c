"""The network a config and fitted preprocessing describe: the tasks, the encoder (one
per data source with sources), the trunk check and the architecture around them."""

from __future__ import annotations

from polytask.architectures import ArchitectureSpec, MultiTaskNet, architecture_class
from polytask.config import RunConfig, validate_options
from polytask.encoders.build import build_encoder
from polytask.encoders.protocol import Encoder
from polytask.encoders.sources import SourceRouter
from polytask.encoders.trunks import check_trunk
from polytask.errors import PolytaskError
from polytask.features.preprocess import Preprocessor
from polytask.prepare import check_sources
from polytask.tasks import Task, make_task


def build_tasks(cfg: RunConfig) -> list[Task]:
    return [make_task(t.name, t.kind, t.label_columns, t.options) for t in cfg.tasks]


def build_net(
    cfg: RunConfig, pre: Preprocessor | list[Preprocessor], tasks: list[Task]
) -> MultiTaskNet:
    """The network for fitted preprocessing, one preprocessor per data source (a bare one
    is a single table's); a config with sources gets a multi-source encoder
    (:class:`polytask.encoders.sources.SourceRouter`) in front of the architecture."""
    m = cfg.model
    cls = architecture_class(m.architecture)
    options = validate_options(cls.Options, m.options, where=f"architecture '{m.architecture}'")
    # an architecture that builds its own shared layers gets the encoder without hidden
    # layers, and builds them from the spec's widths and norm
    hidden = [] if cls.builds_shared_layers else list(m.hidden)
    check_trunk(m.trunk, cls.name, cls.builds_shared_layers, bool(cfg.sources))
    pres = pre if isinstance(pre, list) else [pre]
    if cfg.sources:
        encoder: Encoder = _source_router(cfg, pres, tasks, hidden)
    else:
        encoder = build_encoder(m, pres[0], tasks, hidden, cls.needs_spatial)
    if encoder.spatial and cls.builds_shared_layers:
        raise PolytaskError(
            f"architecture '{m.architecture}' does not take per-pixel tasks; use 'hard'"
        )
    spec = ArchitectureSpec(
        encoder, tasks, m.head_hidden, m.activation, m.dropout, options, m.hidden, m.norm
    )
    return cls(spec)


def _source_router(
    cfg: RunConfig, pres: list[Preprocessor], tasks: list[Task], hidden: list[int]
) -> SourceRouter:
    """Each source's own encoder (no hidden layers) and first layer, then ``hidden[1:]``
    shared by all: the first hidden width is where the sources meet."""
    m = cfg.model
    check_sources(cfg, tasks)
    by_name = {t.name: t for t in tasks}
    encoders = [
        build_encoder(m, p, [by_name[t.name] for t in source.tasks], [])
        for source, p in zip(cfg.sources, pres, strict=True)
    ]
    width = m.hidden[0] if m.hidden else 64
    return SourceRouter(encoders, width, hidden[1:], m.activation, m.dropout, m.norm)
