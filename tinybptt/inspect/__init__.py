"""Look inside backpropagation through time.

``walk(loss)``                  run backward and list every node of the graph in backward
                                order with the norm of the gradient that reached it and its
                                status: ok / zero / underflow / no-path / nonfinite.
``detect_anomaly()``            name the first node whose forward or backward made NaN/Inf.
``jacobian_norms(layer, x)``    ||dh_T/dh_t|| for every t, per-step factors and the classical
                                bound, in log10 (renormalised products: no underflow).
``logspace_backprop(...)``      log10 ||dL/dh_t|| pushed back analytically in log space.
``to_dot(walk_or_loss)``        Graphviz DOT of the unrolled graph coloured by log10 |grad|;
                                ``render_dot`` makes SVG/PNG when Graphviz is installed.
``plot``                        matplotlib figures (optional dependency).
"""
from .anomaly import Anomaly, AnomalyError, AnomalyLog, detect_anomaly
from .dot import dot_available, render_dot, to_dot
from .jacobian import (MAX_DERIVATIVE, CellSpec, JacobianReport, cell_from_layer, jacobian_norms, logspace_backprop,
                       run_cell, spectral_norm, spectral_radius, step_jacobian, step_vjp)
from .numerics import count_subnormal, log10_norm, norm, subnormal_mask
from .records import NodeRecord, Walk
from .walk import walk

__all__ = ["walk", "Walk", "NodeRecord", "detect_anomaly", "AnomalyError", "Anomaly", "AnomalyLog",
           "jacobian_norms", "logspace_backprop", "JacobianReport", "CellSpec", "cell_from_layer", "run_cell",
           "step_jacobian", "step_vjp", "spectral_norm", "spectral_radius", "MAX_DERIVATIVE", "to_dot", "render_dot",
           "dot_available", "log10_norm", "norm", "count_subnormal", "subnormal_mask"]
