"""YAML presets for `specmamba train --config NAME` (only what differs from the defaults)."""
