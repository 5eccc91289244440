"""The medical knowledge graph of the synthetic world (WORLD.md 2.6; ARL's entity embeddings are trained on it).

Twelve findings = 4 types (by shape: round, spiculated, oval, linear) x 3 subtypes (by texture: solid,
striped, dotted), each with a fixed opaque name. Super-classes follow a Latin square,
super = (type + subtype) mod 4, so neither the shape nor the texture alone tells the super-class. Each
finding has a preferred zone, zone = (3 * type + subtype) mod 4 (every zone is preferred by 3 findings);
the medical scene sampler puts a finding there with probability 0.7. Entities: 12 findings, 4
super-classes, 4 zones, 3 textures (23); triples: subtype_of, typically_located_in, has_texture (36).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

FINDING_TYPES = ("round", "spiculated", "oval", "linear")
FINDING_TEXTURES = ("solid", "striped", "dotted")
# NOTE: opaque names (no word in them hints at type, texture or super-class); index = 3 * type + subtype.
FINDINGS = ("calvoma", "dresoma", "pelinoid", "toruma", "vexilis", "morandoma",
            "kestroid", "balunoma", "sirrhea", "quolid", "fennoma", "liporax")
SUPERCLASSES = ("varnic", "solent", "meridal", "ostral")
ZONES = ("upper left", "upper right", "lower left", "lower right")
RELATIONS = ("subtype_of", "typically_located_in", "has_texture")
KINDS = ("finding", "superclass", "zone", "texture")


def finding_id(finding_type: int, subtype: int) -> int:
    """(type 0..3, texture subtype 0..2) -> finding id 0..11."""
    if not (0 <= finding_type < len(FINDING_TYPES) and 0 <= subtype < len(FINDING_TEXTURES)):
        raise ValueError(f"finding_type={finding_type} must be in 0..3 and subtype={subtype} in 0..2")
    return len(FINDING_TEXTURES) * finding_type + subtype


def superclass(finding: int) -> int:
    """finding id -> super-class id, (type + subtype) mod 4 (Latin square)."""
    t, s = divmod(int(finding), len(FINDING_TEXTURES))
    return (t + s) % len(SUPERCLASSES)


def preferred_zone(finding: int) -> int:
    """finding id -> preferred zone id, (3 * type + subtype) mod 4."""
    t, s = divmod(int(finding), len(FINDING_TEXTURES))
    return (3 * t + s) % len(ZONES)


@dataclasses.dataclass(frozen=True)
class KnowledgeGraph:
    """Entities (name, kind) and int32 [T, 3] triples (head entity, relation, tail entity)."""

    entities: tuple
    relations: tuple
    triples: np.ndarray

    def entity_id(self, name: str) -> int:
        """entity name -> id; ValueError naming an unknown entity."""
        for i, (n, _) in enumerate(self.entities):
            if n == name:
                return i
        raise ValueError(f"unknown entity {name!r}")

    def to_tsv(self, directory: str) -> tuple:
        """directory -> (entities.tsv path, triples.tsv path): `id name kind` and `head relation tail` rows."""
        os.makedirs(directory, exist_ok=True)
        ent_path = os.path.join(directory, "entities.tsv")
        tri_path = os.path.join(directory, "triples.tsv")
        with open(ent_path, "w", encoding="utf-8") as f:
            f.write("id\tname\tkind\n")
            for i, (name, kind) in enumerate(self.entities):
                f.write(f"{i}\t{name}\t{kind}\n")
        with open(tri_path, "w", encoding="utf-8") as f:
            f.write("head\trelation\ttail\n")
            for h, r, t in self.triples.tolist():
                f.write(f"{self.entities[h][0]}\t{self.relations[r]}\t{self.entities[t][0]}\n")
        return ent_path, tri_path


def medical() -> KnowledgeGraph:
    """-> the medical KG: 23 entities, 36 triples (WORLD.md 2.6)."""
    entities = tuple([(n, "finding") for n in FINDINGS] + [(n, "superclass") for n in SUPERCLASSES]
                     + [(n, "zone") for n in ZONES] + [(n, "texture") for n in FINDING_TEXTURES])
    sup0 = len(FINDINGS)
    zone0 = sup0 + len(SUPERCLASSES)
    tex0 = zone0 + len(ZONES)
    rows = []
    for f in range(len(FINDINGS)):
        rows.append((f, 0, sup0 + superclass(f)))
        rows.append((f, 1, zone0 + preferred_zone(f)))
        rows.append((f, 2, tex0 + f % len(FINDING_TEXTURES)))
    return KnowledgeGraph(entities, RELATIONS, np.asarray(rows, np.int32))


def knowledge_graph(name: str) -> KnowledgeGraph:
    """graph name -> KnowledgeGraph; only "medical" exists."""
    if name != "medical":
        raise ValueError(f"unknown knowledge graph {name!r}; valid: medical")
    return medical()
