"""Per-format record builders: model objects in, records shaped exactly like the real tools' out."""
