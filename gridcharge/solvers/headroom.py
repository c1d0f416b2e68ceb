"""Node limits as resources shared by cars: the (resource, session, weight) membership every period-by-period
allocator (the baselines, the executable rounding) fills, without a Python loop over cars."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import PHASES, Problem


@dataclass(frozen=True)
class Resources:
    """Node limits as resources: membership pairs (resource, session, weight) and headroom per period [kW]."""

    pair_res: np.ndarray
    pair_sess: np.ndarray
    pair_w: np.ndarray
    res_node: np.ndarray
    res_kind: np.ndarray  # "import", "phase_A", "phase_B", "phase_C"
    slack: np.ndarray  # (R, T) limit - base load [kW]; negative where base load alone is over the limit

    @property
    def n(self) -> int:
        return len(self.res_node)


def node_resources(p: Problem) -> Resources:
    """Every import limit (weight 1 for each car below) and each phase of every phase-limited node (weight = the
    car's phase share), with ``slack`` = limit - base load [kW]."""
    res, sess, w, node, kind, slack = [], [], [], [], [], []
    offset = 0
    limited = np.flatnonzero(np.isfinite(p.import_limit_kw))
    phased = np.flatnonzero(np.isfinite(p.phase_import_limit_kw))
    groups = [("import", limited, p.import_limit_kw, 1.0, None)]
    groups += [(f"phase_{name}", phased, p.phase_import_limit_kw, 1.0 / 3.0, k) for k, name in enumerate(PHASES)]
    for name, nodes, limit, base_share, phase in groups:
        rid = np.full(p.n_nodes, -1, dtype=np.int64)
        rid[nodes] = offset + np.arange(len(nodes))
        weight = np.ones(len(p.member_session)) if phase is None else p.phase_share[p.member_session, phase]
        on = (rid[p.member_node] >= 0) & (weight > 0)
        res.append(rid[p.member_node[on]])
        sess.append(p.member_session[on])
        w.append(weight[on])
        node.append(nodes)
        kind += [name] * len(nodes)
        slack.append(limit[nodes, None] - base_share * p.base_net_kw[nodes])
        offset += len(nodes)
    return Resources(
        pair_res=np.concatenate(res).astype(np.int64), pair_sess=np.concatenate(sess).astype(np.int64),
        pair_w=np.concatenate(w).astype(float), res_node=np.concatenate(node).astype(np.int64),
        res_kind=np.asarray(kind, dtype=object), slack=np.concatenate(slack).reshape(offset, p.n_periods),
    )
