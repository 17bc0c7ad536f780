"""Adversarial ranking attacks (``--attack TYPE:key=val:...``, robrank's attack strings).

``ATTACKS`` maps an attack string's TYPE (``CA``, ``QA``, ``SPQA``, ``ES``, ``TMA``, ``LTM``,
``GTM``, ``GTT``, ``FOA``) to an :class:`attacks.base.Attack` subclass, one file per type. Every
attack is optimised by the one projected-gradient engine of :mod:`attacks.pgd` and run over a
split by :class:`attacks.runner.AttackRunner`; :mod:`attacks.profiles` lists the swipe profiles
(``rob28``, ``rob224``, ...). A new attack is one file registering with
``@ATTACKS.register("TYPE")``.
"""

from __future__ import annotations

from registry import Registry, import_components

ATTACKS = Registry("attack", "--attack")

import_components(__name__, __path__)
from attacks.base import Attack
from attacks.spec import AttackSpec, parse_attack_string


def build(string: str, compat: bool = False) -> Attack:
    """The attack an attack string describes; ``compat`` reproduces robrank's quirks."""
    spec = parse_attack_string(string)
    return ATTACKS.get(spec.type)(spec, compat=compat)


__all__ = ["ATTACKS", "Attack", "AttackSpec", "build", "parse_attack_string"]
