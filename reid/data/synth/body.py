"""Geometry of a drawn pedestrian: where head, torso, limbs and feet go for an identity and a pose."""

from __future__ import annotations

import math
from dataclasses import dataclass

from reid.data.synth.attributes import Identity, Nuisance

Point = tuple[float, float]


@dataclass(frozen=True)
class Limb:
    """A limb from ``root`` through ``joint`` to ``end`` drawn ``width`` pixels thick."""

    root: Point
    joint: Point
    end: Point
    width: int

    def point(self, t: float) -> Point:
        """The point a fraction ``t`` (0 = root, 1 = end) along the limb."""
        return (self.root[0] + t * (self.end[0] - self.root[0]), self.root[1] + t * (self.end[1] - self.root[1]))


@dataclass(frozen=True)
class Body:
    """All positions in canvas pixels. ``direction`` is +1 facing right, -1 facing left, 0 front/back."""

    person_height: float
    centre_x: float
    top: float
    feet_y: float
    head: Point
    head_radius: float
    neck_y: float
    shoulder_y: float
    hip_y: float
    shoulder_half: float
    hip_half: float
    legs: tuple[Limb, Limb]
    arms: tuple[Limb, Limb]
    facing: str
    direction: int

    @property
    def torso(self) -> list[Point]:
        """Trapezoid from the shoulders to the hips."""
        cx = self.centre_x
        return [(cx - self.shoulder_half, self.shoulder_y), (cx + self.shoulder_half, self.shoulder_y),
                (cx + self.hip_half, self.hip_y), (cx - self.hip_half, self.hip_y)]

    def y(self, fraction: float) -> float:
        """The height ``fraction`` of the person's height below the top of the head."""
        return self.top + fraction * self.person_height


def _limb(root: Point, length: float, angle_deg: float, width: float) -> Limb:
    a = math.radians(angle_deg)
    end = (root[0] + length * math.sin(a), root[1] + length * math.cos(a))
    joint = ((root[0] + end[0]) / 2, (root[1] + end[1]) / 2)
    return Limb(root, joint, end, max(2, round(width)))


def layout_body(identity: Identity, nuisance: Nuisance, canvas: tuple[int, int]) -> Body:
    """Place a person of ``identity`` in pose ``nuisance`` on a canvas of ``(width, height)`` pixels.

    Height class sets the figure height, build the widths; gender presentation shifts width from the
    hips to the shoulders (male) or back (female); the figure fits a 1:2 box inside the canvas.
    """
    width, height = canvas
    ref = min(float(height), 2.0 * width)
    ph = ref * 0.86 * identity.height_factor * nuisance.scale
    feet_y = (height + ref) / 2 - ref * 0.05 + nuisance.dy * ref
    cx = width / 2 + nuisance.dx * width
    top = feet_y - ph
    side = nuisance.facing in ("left", "right")
    direction = {"left": -1, "right": 1}.get(nuisance.facing, 0)
    b = identity.build_factor
    narrow = 0.62 if side else 1.0
    male = identity.gender == "male"
    shoulder_half = 0.12 * ph * b * (1.12 if male else 0.94) * narrow
    hip_half = 0.095 * ph * b * (0.95 if male else 1.14) * narrow
    r = 0.068 * ph
    shoulder_y, hip_y = top + 0.17 * ph, top + 0.53 * ph
    leg_len = feet_y - hip_y - 0.012 * ph
    stride, swing = nuisance.stride, nuisance.arm_swing
    leg_w, arm_w = 0.066 * ph * b, 0.046 * ph * b
    if side:
        legs = (_limb((cx, hip_y), leg_len, stride, leg_w), _limb((cx, hip_y), leg_len, -stride, leg_w))
        arm_root = (cx, shoulder_y + arm_w * 0.5)
        arms = (_limb(arm_root, 0.36 * ph, -swing, arm_w), _limb(arm_root, 0.36 * ph, swing, arm_w))
    else:
        legs = (_limb((cx - hip_half * 0.5, hip_y), leg_len, -stride, leg_w),
                _limb((cx + hip_half * 0.5, hip_y), leg_len, stride, leg_w))
        off = shoulder_half - arm_w * 0.45
        tilt = 5.0 + 0.3 * swing
        arms = (_limb((cx - off, shoulder_y + arm_w * 0.5), 0.36 * ph, -tilt, arm_w),
                _limb((cx + off, shoulder_y + arm_w * 0.5), 0.36 * ph, tilt, arm_w))
    head = (cx + direction * 0.15 * r, top + r)
    return Body(ph, cx, top, feet_y, head, r, top + 2 * r, shoulder_y, hip_y, shoulder_half, hip_half,
                legs, arms, nuisance.facing, direction)
