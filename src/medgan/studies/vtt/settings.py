"""The ``vtt`` config section with the schema's defaults filled in, and its cross-checks."""

from __future__ import annotations

from typing import Any

from medgan.config import ConfigError

ANSWERS_DEFAULT = "resources/vtt_answers"
KIT_DEFAULTS: dict[str, Any] = {
    "n_real": 50,
    "n_synthetic": 50,
    "seed": 0,
    "confidence": True,
    "title": "Visual Turing Test",
    "instructions": "",
    "second_round": {"clue": "none", "text": "", "n_examples": 3},
}


def vtt_kits(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every kit of ``config["vtt"]["kits"]`` with defaults filled in."""
    kits = config.get("vtt", {}).get("kits", {})
    out = {}
    for name, spec in kits.items():
        second = {**KIT_DEFAULTS["second_round"], **spec.get("second_round", {})}
        out[name] = {**KIT_DEFAULTS, **spec, "second_round": second}
    return out


def vtt_answers_dir(config: dict[str, Any], kit: str) -> str:
    """The folder the answer files of ``kit`` are read from: ``<vtt.answers>/<kit>``."""
    return f"{config.get('vtt', {}).get('answers', ANSWERS_DEFAULT).rstrip('/')}/{kit}"


def check_vtt_config(config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the key when a kit names an unknown model or asks
    for a text clue without a text."""
    models = config.get("models", {})
    for name, spec in vtt_kits(config).items():
        unknown = [m for m in spec["models"] if m not in models]
        if unknown:
            raise ConfigError(f"vtt.kits.{name}.models: no model(s) {unknown}")
        second = spec["second_round"]
        if second["clue"] == "text" and not second["text"].strip():
            raise ConfigError(f"vtt.kits.{name}.second_round.text: the text clue is empty")
