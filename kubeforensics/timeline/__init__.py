"""The unified timeline across audit, process, network, alert and Event evidence."""

from kubeforensics.timeline.unified import SOURCE_SQL, annotate, build_timeline

__all__ = ["SOURCE_SQL", "annotate", "build_timeline"]
