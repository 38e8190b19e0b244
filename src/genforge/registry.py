"""The one table per kind of component: models, codecs, training tasks and pipelines.

Each table maps a kind's name (what configs and ``genforge.json`` say) to where it lives, as
``"module:attribute"``, imported on first use so that reading a table costs nothing. A new family or
modality adds one line here (or calls ``register`` from its own package); nothing else in genforge
lists kinds, so no if-chain over kinds is repeated across files.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from .errors import ConfigError, GenforgeError


class Registry:
    """Name -> component. ``get`` raises ``error`` (one line naming the kinds known) for unknown names."""

    def __init__(self, what: str, entries: dict[str, str]) -> None:
        self.what = what
        self._entries: dict[str, Any] = dict(entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def register(self, name: str, obj: Any = None) -> Any:
        """``REG.register("x", obj)`` or ``@REG.register("x")`` on a class or function."""
        if obj is None:
            def deco(o: Any) -> Any:
                self._entries[name] = o
                return o
            return deco
        self._entries[name] = obj
        return obj

    def unknown(self, name: Any, where: str = "", error: Callable[[str], GenforgeError] = ConfigError) \
            -> GenforgeError:
        known = ", ".join(repr(n) for n in self._entries)
        return error(f"{where or self.what + ' kind'}={name!r} is unknown: this version of genforge knows {known}")

    def get(self, name: Any, where: str = "", error: Callable[[str], GenforgeError] = ConfigError) -> Any:
        if name not in self:
            raise self.unknown(name, where, error)
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = self._entries[name] = getattr(import_module(module), attr)
        return entry


MODELS = Registry("model", {
    "transformer": "genforge.models.transformer:GPT",
    "rnn": "genforge.models.rnn:RNNLM",
    "unet": "genforge.models.unet:UNet",
    "gan": "genforge.models.gan:GAN",
})
CODECS = Registry("codec", {
    "char": "genforge.codecs.char:CharCodec",
    "bpe": "genforge.codecs.bpe:BPECodec",
    "smiles": "genforge.codecs.smiles:SmilesCodec",
    "music": "genforge.codecs.music:MusicCodec",
})
TASKS = Registry("task", {
    "lm": "genforge.train.tasks.lm:LanguageModelTask",
    "diffusion": "genforge.train.tasks.diffusion:DiffusionTask",
    "gan": "genforge.train.tasks.gan:GANTask",
    "rl": "genforge.train.tasks.rl:RLTask",
})
# codec kind -> how a recipe's corpus becomes the text the codec reads (path, validation share or None, report)
CORPORA = Registry("corpus preparer", {
    "smiles": "genforge.data.molecules:prepare_recipe_corpus",
    "music": "genforge.data.music:prepare_recipe_corpus",
})
PIPELINES = Registry("pipeline", {
    "text": "genforge.pipelines.text:TextModel",
    "image": "genforge.pipelines.image:ImageModel",
    "molecule": "genforge.pipelines.molecule:MoleculeModel",
    "music": "genforge.pipelines.music:MusicModel",
    "speech": "genforge.pipelines.speech:SpeechModel",
})
