"""Pure ID-photo geometry: where the head goes in the output and the affine map to get it there."""

from __future__ import annotations

import math

import attrs
import numpy as np
import numpy.typing as npt

Point = tuple[float, float]
Matrix = npt.NDArray[np.float64]
"""A 2x3 affine matrix mapping source pixels to output pixels."""


def _share(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.05 <= value <= 0.95:
        raise ValueError(f"{attribute.name} must be within [0.05, 0.95], got {value}")


@attrs.frozen
class FramingConfig:
    """Where the head sits in the photo (fractions of the output height).

    The defaults are passport-grade (ICAO 9303): chin to crown 72 % of the height (the rule
    asks 70-80 %; the crown is estimated as twice the eye-to-chin length above the chin,
    hair may rise above it), the eye line 48 % from the top (the rule: 30-50 %), the face
    centred and level. When the source ends above the photo's bottom edge the head may grow up to
    ``max_head_share`` and move down to ``max_eye_line`` so that the body reaches the bottom.
    """

    head_share: float = attrs.field(default=0.72, validator=_share)
    """Chin-to-crown height as a share of the output height."""
    eye_line: float = attrs.field(default=0.48, validator=_share)
    """Height of the eye line, as a fraction of the output height from the top."""
    crown_factor: float = 2.0
    """Chin-to-crown = this times chin-to-eye-line (the usual anthropometric estimate)."""
    max_roll: float = 25.0
    """Head tilts (degrees) are corrected up to this; larger ones are clamped."""
    max_head_share: float = attrs.field(default=0.78, validator=_share)
    max_eye_line: float = attrs.field(default=0.50, validator=_share)


@attrs.frozen
class FaceKeypoints:
    """The few face points the framing needs, in source pixels (x right, y down)."""

    right_eye: Point
    """The subject's right eye (on the image's left)."""
    left_eye: Point
    chin: Point
    forehead: Point
    """Top of the forehead as found by the landmarks (below the hairline)."""

    @property
    def eye_centre(self) -> Point:
        return _mid(self.right_eye, self.left_eye)

    @property
    def roll(self) -> float:
        """Tilt of the eye line in degrees; positive when the left eye is lower."""
        dx = self.left_eye[0] - self.right_eye[0]
        dy = self.left_eye[1] - self.right_eye[1]
        return math.degrees(math.atan2(dy, dx))

    def crown(self, crown_factor: float) -> Point:
        """Estimated top of the head: the chin-to-eye-line segment extended."""
        (cx, cy), (ex, ey) = self.chin, self.eye_centre
        return (cx + crown_factor * (ex - cx), cy + crown_factor * (ey - cy))

    def face_centre_x(self) -> float:
        """Horizontal centre of the face: mean of eye centre, forehead and chin."""
        return (self.eye_centre[0] + self.forehead[0] + self.chin[0]) / 3


@attrs.frozen
class Framing:
    """The source-to-output affine map for one photo."""

    matrix: Matrix = attrs.field(eq=False)
    size: tuple[int, int]
    """Output (width, height)."""
    scale: float
    """Output pixels per source pixel."""
    roll: float
    """Degrees of tilt corrected."""

    def apply(self, point: Point) -> Point:
        """Map a source point to the output."""
        x, y = self.matrix @ np.array([point[0], point[1], 1.0])
        return (float(x), float(y))


def frame(
    face: FaceKeypoints,
    size: tuple[int, int],
    config: FramingConfig = FramingConfig(),
    source_size: tuple[int, int] | None = None,
) -> Framing:
    """Scale, rotate and place ``face`` so that its head and eyes sit where ``config`` says.

    The map rotates about the eye centre to level the eyes, scales the chin-to-crown height
    to ``head_share`` of the output height, puts the eye line at ``eye_line`` and centres
    the face horizontally. Given ``source_size`` (width, height), a source that ends above
    the bottom edge makes the head larger and lower, within the config's maxima.
    """
    height = size[1]
    framing = _place(face, size, config, config.head_share, config.eye_line)
    if source_size is None:
        return framing
    share, eye_line = config.head_share, config.eye_line
    for _ in range(3):  # the visible columns move with the zoom: settle in a few rounds
        lowest = _source_bottom(framing, source_size)
        if lowest >= height - 0.5:
            break
        below_eyes = lowest - eye_line * height
        if below_eyes <= 0:
            break
        zoom = min(config.max_head_share / share, (1 - eye_line) * height / below_eyes)
        share = share * max(1.0, zoom)
        reach = eye_line * height + below_eyes * max(1.0, zoom)
        eye_line = min(config.max_eye_line, eye_line + max(0.0, height - reach) / height)
        framing = _place(face, size, config, share, eye_line)
    return framing


def _place(
    face: FaceKeypoints, size: tuple[int, int], config: FramingConfig, share: float, eye: float
) -> Framing:
    width, height = size
    roll = max(-config.max_roll, min(config.max_roll, face.roll))
    theta = math.radians(roll)
    cos, sin = math.cos(theta), math.sin(theta)
    rotate = np.array([[cos, sin], [-sin, cos]])  # undoes a tilt of `roll`
    centre_eye = np.array(face.eye_centre)

    def level(p: Point) -> npt.NDArray[np.float64]:
        return np.asarray(rotate @ (np.array(p) - centre_eye), dtype=np.float64)

    head = float(level(face.chin)[1] - level(face.crown(config.crown_factor))[1])
    if head <= 1e-6:
        raise ValueError("degenerate face: the chin is not below the eyes")
    scale = share * height / head
    centre = np.mean([level(face.eye_centre), level(face.forehead), level(face.chin)], axis=0)
    offset = np.array([width / 2 - scale * centre[0], eye * height])
    linear = scale * rotate
    matrix = np.hstack([linear, (offset - linear @ centre_eye).reshape(2, 1)])
    return Framing(matrix=matrix, size=(width, height), scale=scale, roll=roll)


def _source_bottom(framing: Framing, source_size: tuple[int, int]) -> float:
    """The highest output row the source's bottom edge reaches inside the output's width."""
    w, h = source_size
    xs = np.linspace(0.0, float(w), 257)
    pts = framing.matrix @ np.vstack([xs, np.full_like(xs, float(h)), np.ones_like(xs)])
    inside = (pts[0] >= 0) & (pts[0] <= framing.size[0])
    return float(pts[1][inside].min()) if inside.any() else math.inf


def _mid(a: Point, b: Point) -> Point:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
