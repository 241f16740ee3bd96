"""mixgan recipes: the shipped recipes, resolved, or one recipe as a complete file."""
from __future__ import annotations

import argparse

from ..config import Recipe, base_names, recipe_names


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("recipes", help="list the shipped recipes, or print one resolved",
                       description="List the shipped recipes (a base per dataset family, what each model changes on it, "
                                   "named variants), each with what it is made of; or print one, resolved, as a complete "
                                   "file whose every value names the recipe that set it.")
    p.add_argument("name", nargs="?", help="a recipe name (image-gmgan, or FAMILY-MODEL for any model) or .toml path")
    return p


def run(args) -> int:
    if args.name:
        print(Recipe.read(args.name).to_toml().rstrip())
        return 0
    from ..models import MODELS

    bases = base_names()
    named = recipe_names()
    rows = [(r.name, r.chain, r.summary) for r in map(Recipe.read, named)]
    bare = [f"{b}-{m}" for b in bases for m in MODELS if f"{b}-{m}" not in named]
    rows += [(name, Recipe.read(name).chain, f"{name.split('-', 1)[1]} on the {Recipe.read(name).chain} base as it is")
             for name in bare]
    width = max(len(r[0]) for r in rows)
    chain = max(len(r[1]) for r in rows)
    for name, made, summary in rows:
        print(f"{name:<{width}}  {made:<{chain}}  {summary}")
    return 0
