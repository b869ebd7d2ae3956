"""Matching a story against a scenario's GROUND_TRUTH.json (the acceptance criterion of issue 4)."""

from __future__ import annotations

from typing import Any

import pandas as pd

WINDOW = pd.Timedelta(minutes=2)


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _technique_match(want: str, have: list[str]) -> bool:
    return any(h == want or h.split(".")[0] == want.split(".")[0] for h in have)


def match_truth(story: Any, truth: dict[str, Any]) -> list[dict[str, Any]]:
    """For each ground-truth step: the story steps within +-2 min, whether one matches by technique or
    entity, and which entities (pod, user, process, ip) no step in that window names."""
    out = []
    for gt in truth["steps"]:
        t = pd.Timestamp(gt["time"])
        ent = gt.get("entities", {})
        near = [s for s in story.steps if abs(s.time - t) <= WINDOW]

        def names(s: Any, key: str, val: str) -> bool:
            if key == "pod":
                return s.pod == val
            if key == "user":
                return s.actor == val
            if key == "process":
                return _base(s.process) == _base(val)
            if key == "ip":
                return val in (s.dst_ip, getattr(s, "src_ip", "")) or val in s.summary
            return False

        matched = [
            s
            for s in near
            if _technique_match(gt["technique"], s.techniques)
            or any(names(s, k, ent[k]) for k in ("pod", "user", "process", "ip") if ent.get(k))
        ]
        problems = [] if matched else ["no step within 2 min matches technique or entity"]
        for key in ("pod", "user", "process", "ip"):
            if ent.get(key) and not any(names(s, key, ent[key]) for s in near):
                problems.append(f"{key} {ent[key]!r} not named")
        out.append({"step": gt.get("step"), "technique": gt["technique"], "problems": problems, "near": near})
    return out
