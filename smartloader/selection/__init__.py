"""Selection rules: which ``k`` of a scored pool of ``n`` samples a step trains on.

Each rule is a pure function (paste it into your own loop) and a small class behind the
:class:`Selector` protocol, built from YAML by :func:`build_selector`.
"""
from smartloader.selection.ranked import ranked_log_weights, ranked_multinomial, uniform_choice
from smartloader.selection.rules import (SELECTOR_TYPES, RankedSelector, SelectiveBackprop,
                                         Selector, TopKSelector, UniformSelector,
                                         build_selector, history_cdf,
                                         selective_backprop_select, topk_select,
                                         uniform_select)

__all__ = ["ranked_multinomial", "ranked_log_weights", "uniform_choice", "Selector",
           "build_selector", "SELECTOR_TYPES", "UniformSelector", "TopKSelector",
           "RankedSelector", "SelectiveBackprop", "uniform_select", "topk_select",
           "history_cdf", "selective_backprop_select"]
