"""Look inside backpropagation through time.

``walk(loss)``                  run backward and list every node of the graph in backward
                                order with the norm of the gradient that reached it and its
                                status: ok / zero / underflow / no-path / nonfinite.
``detect_anomaly()``            name the first node whose forward or backward made NaN/Inf.
``jacobian_norms(layer, x)``    ||dh_{T-1}/dh_t|| for every t, per-step factors and the classical
                                bound, in log10 (renormalised products: no underflow).
``logspace_backprop(...)``      log10 ||dL/dh_t|| pushed back analytically in log space.
``jacobian_spectra(layer, x)``  singular values of dh_t/dh_{t-1} and of their products, beside
                                the classical bound.
``lstm_gradient_paths(lstm, x)`` dL/dc_t split into the cell path (f_{t+1} dL/dc_{t+1}) and the
                                path through h_t; the forget-gate product prod f.
``to_dot(walk_or_loss)``        Graphviz DOT of the unrolled graph coloured by log10 |grad|;
                                ``render_dot`` makes SVG/PNG when Graphviz is installed.
``to_dot_folded(walk)``         the same with the cell drawn once for all steps (min/median/max
                                |grad| over steps), readable for long unrolls; ``grid_svg(walk)``
                                an SVG grid (cell nodes x time steps) made without Graphviz.
``connectivity(model, x)``      ||dy/dx_t|| of one decision to every input step (or word), shaded
                                in the terminal, as a figure or JSON.
``plot``                        matplotlib figures (optional dependency); the objects above
                                have ``plot()``, ``to_dict()`` and show themselves in a notebook.

Time steps are numbered t = 0..T-1 everywhere (``out[t]`` is h_t); the initial state
is t = -1 (arrays over the states, such as ``JacobianReport.log10_norms``, start there).
"""
from .anomaly import Anomaly, AnomalyError, AnomalyLog, detect_anomaly
from .connectivity import Connectivity, connectivity, plot_rows, render_rows
from .dot import DotSource, dot_available, render_dot, to_dot
from .fold import grid_svg, to_dot_folded
from .jacobian import (MAX_DERIVATIVE, CellSpec, JacobianReport, cell_from_layer, jacobian_norms, logspace_backprop,
                       run_cell, spectral_norm, spectral_radius, step_jacobian, step_vjp)
from .numerics import count_subnormal, log10_norm, norm, subnormal_mask
from .paths import LSTMPaths, lstm_gradient_paths
from .records import NodeRecord, Walk
from .spectra import JacobianSpectra, jacobian_spectra
from .walk import walk

__all__ = ["walk", "Walk", "NodeRecord", "detect_anomaly", "AnomalyError", "Anomaly", "AnomalyLog",
           "jacobian_norms", "logspace_backprop", "JacobianReport", "CellSpec", "cell_from_layer", "run_cell",
           "step_jacobian", "step_vjp", "spectral_norm", "spectral_radius", "MAX_DERIVATIVE", "to_dot",
           "to_dot_folded", "grid_svg", "DotSource", "render_dot", "dot_available", "jacobian_spectra",
           "JacobianSpectra", "lstm_gradient_paths", "LSTMPaths", "connectivity", "Connectivity", "render_rows",
           "plot_rows", "log10_norm", "norm", "count_subnormal", "subnormal_mask"]
