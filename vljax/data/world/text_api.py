"""The text-facing part of the World API (WORLD.md 5.1): vocab, class names, templates, corpora, parser.

Kept as a mixin so `world.py` stays about scenes and pixels; everything here delegates to
`vljax.data.world.language`.
"""
from __future__ import annotations

import functools

from vljax.data.world.language import corpus, parse as parse_lib, templates as templates_lib, vocab as vocab_lib


class TextAPI:
    """Mixin for World: needs `self.cfg` (the world ConfigDict)."""

    @functools.cached_property
    def vocab(self) -> vocab_lib.Vocab:
        """Word-level vocabulary of the enabled languages (pad 0, bos 1, eos 2, unk 3)."""
        return vocab_lib.Vocab(tuple(self.cfg.languages))

    def class_names(self, task: str, lang: str = "en") -> tuple:
        """Class names of a label task ('shape', 'color', 'color_shape', ...) in label-id order."""
        gen = getattr(self, "_generator", None)  # NOTE: video / surgical worlds name their own label tasks.
        if task in getattr(gen, "CLASS_NAME_TASKS", ()):
            return gen.class_names(task, lang)
        from vljax.data.world import domains  # NOTE: local import keeps the text API importable on its own.
        if task in domains.DOMAIN_TASKS:
            return domains.class_names(task, lang, self.cfg)
        return templates_lib.class_names(task, lang, self.cfg)

    def templates(self, lang: str, kind: str) -> tuple:
        """Prompt templates with one '{}' slot (kinds: photo, caption_style, ensemble_image, aerial, medical, ...)."""
        from vljax.data.world import domains
        if kind in domains.TEMPLATES:
            return domains.templates(lang, kind)
        return templates_lib.templates(lang, kind)

    def descriptors(self, task: str) -> dict:
        """{class name: [attribute phrases]} (PCB-style descriptors)."""
        return templates_lib.descriptors(task, self.cfg)

    def attribute_phrases(self, task: str, marginalize, lang: str = "en") -> tuple:
        """Per class of `task`, its noun phrases with every value of the `marginalize` attributes
        (('medium red circle', 'large red circle', ...) for shape over size and color)."""
        return templates_lib.attribute_phrases(task, marginalize, lang, self.cfg)

    def base_novel(self, task: str) -> tuple:
        """(base classes, novel classes): sorted class names split in halves."""
        return templates_lib.base_novel(task, self.cfg)

    def text_corpus(self, kind: str, lang: str = "en"):
        """Random-access text source of a corpus kind (captions, captions_qa, visual, reasoning, broad, parallel)."""
        return corpus.text_corpus(self, kind, lang)

    @staticmethod
    def text_kind(text) -> str:
        """Rule-based tagger: which corpus kind produced this text."""
        return corpus.text_kind(text)

    @staticmethod
    def knowledge_graph(name: str):
        """Graph name ("medical") -> kg.KnowledgeGraph (entities, int32 [T, 3] triples, `to_tsv(dir)`)."""
        from vljax.data.world import kg  # NOTE: local import keeps the text API importable on its own.
        return kg.knowledge_graph(name)

    @staticmethod
    def parse(text: str, lang: str = "en"):
        """Text -> Parsed(mentions, relations, answer, frames) (inverse of every frame)."""
        return parse_lib.parse(text, lang)
