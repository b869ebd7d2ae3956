"""Interactive investigation views for JupyterLab (ipywidgets 8, plotly, anywidget).

>>> import kubeforensics as kf                                  # doctest: +SKIP
>>> from kubeforensics.widgets import investigate              # doctest: +SKIP
>>> investigate(kf.open_case("case-dir"))                      # doctest: +SKIP

Each view (:class:`TimelineView`, :class:`EventTable`, :class:`ProcessTreeView`,
:class:`FlowMapView`, :class:`PivotView`, :class:`BookmarkPanel`) follows a shared
:class:`FilterState`, renders as a widget in a live kernel and as a plain plotly
figure or escaped HTML table elsewhere (see :func:`in_live_kernel`).
"""

from __future__ import annotations

from kubeforensics.widgets.bookmarks import BookmarkPanel
from kubeforensics.widgets.dashboard import Investigation, investigate
from kubeforensics.widgets.filters import FilterBar, FilterState
from kubeforensics.widgets.flow_map import FlowMapView
from kubeforensics.widgets.pivot import PivotView
from kubeforensics.widgets.process_tree import ProcessTreeView
from kubeforensics.widgets.static import in_live_kernel
from kubeforensics.widgets.table import EventTable
from kubeforensics.widgets.timeline import TimelineView

__all__ = ["BookmarkPanel", "EventTable", "FilterBar", "FilterState", "FlowMapView", "Investigation", "PivotView",
           "ProcessTreeView", "TimelineView", "in_live_kernel", "investigate"]
