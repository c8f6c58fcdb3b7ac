"""What the measures return: volumes from the mask and the ABC/2 (Tada) estimate, per lesion and per type."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..labels import Hemorrhage


@dataclass(frozen=True)
class ABC2:
    """The Tada formula on one connected lesion (or summed over lesions for a type).

    a_mm: greatest diameter on the slice of largest area; b_mm: greatest diameter perpendicular to A on that
    slice; c_mm: slices with hemorrhage x slice spacing; c_kothari_mm: Kothari's weighted slice count x spacing.
    """

    a_mm: float
    b_mm: float
    c_mm: float
    c_kothari_mm: float

    @property
    def volume_ml(self) -> float:
        return self.a_mm * self.b_mm * self.c_mm / 2.0 / 1000.0

    @property
    def volume_kothari_ml(self) -> float:
        return self.a_mm * self.b_mm * self.c_kothari_mm / 2.0 / 1000.0


@dataclass(frozen=True)
class Lesion:
    """One connected component of one hemorrhage type."""

    type: Hemorrhage
    volume_ml: float
    abc2: ABC2
    slices: tuple[int, int]  # first and last slice index holding it


@dataclass(frozen=True)
class TypeMeasurement:
    type: Hemorrhage
    volume_ml: float  # from the mask: voxel count x true voxel volume
    lesions: tuple[Lesion, ...]

    @property
    def abc2_ml(self) -> float:
        """ABC/2 of the type: the sum over its lesions (plain C)."""
        return sum(lesion.abc2.volume_ml for lesion in self.lesions)

    @property
    def abc2_kothari_ml(self) -> float:
        return sum(lesion.abc2.volume_kothari_ml for lesion in self.lesions)

    @property
    def largest(self) -> Lesion:
        return max(self.lesions, key=lambda lesion: lesion.volume_ml)


@dataclass(frozen=True)
class HemorrhageMeasurements:
    """All measures of one label map. `per_type` holds only the types present (volume > 0)."""

    per_type: dict[Hemorrhage, TypeMeasurement] = field(default_factory=dict)

    @property
    def total_ml(self) -> float:
        return sum(m.volume_ml for m in self.per_type.values())

    @property
    def total_abc2_ml(self) -> float:
        return sum(m.abc2_ml for m in self.per_type.values())

    @property
    def total_abc2_kothari_ml(self) -> float:
        return sum(m.abc2_kothari_ml for m in self.per_type.values())

    def types_present(self, min_volume_ml: float = 0.0) -> list[Hemorrhage]:
        return [t for t, m in sorted(self.per_type.items()) if m.volume_ml > min_volume_ml]

    def classification(self, min_volume_ml: float = 0.0) -> str:
        """"IPH", "IPH+IVH", ... or "none" when no hemorrhage is present."""
        types = self.types_present(min_volume_ml)
        return "+".join(t.name for t in types) if types else "none"

    def to_dict(self) -> dict:
        return {
            "total_ml": round(self.total_ml, 4),
            "total_abc2_ml": round(self.total_abc2_ml, 4),
            "total_abc2_kothari_ml": round(self.total_abc2_kothari_ml, 4),
            "classification": self.classification(),
            "per_type": {
                t.name: {
                    "volume_ml": round(m.volume_ml, 4),
                    "abc2_ml": round(m.abc2_ml, 4),
                    "abc2_kothari_ml": round(m.abc2_kothari_ml, 4),
                    "lesions": [
                        {
                            "volume_ml": round(les.volume_ml, 4),
                            "a_mm": round(les.abc2.a_mm, 2),
                            "b_mm": round(les.abc2.b_mm, 2),
                            "c_mm": round(les.abc2.c_mm, 2),
                            "c_kothari_mm": round(les.abc2.c_kothari_mm, 2),
                            "abc2_ml": round(les.abc2.volume_ml, 4),
                            "abc2_kothari_ml": round(les.abc2.volume_kothari_ml, 4),
                            "slices": list(les.slices),
                        }
                        for les in m.lesions
                    ],
                }
                for t, m in sorted(self.per_type.items())
            },
        }
