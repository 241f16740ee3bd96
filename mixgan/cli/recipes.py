"""mixgan recipes: the shipped recipes, or one recipe's file."""
from __future__ import annotations

import argparse

from ..config import Recipe, recipe_names


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("recipes", help="list the shipped recipes, or print one",
                       description="List the shipped recipes (chosen by dataset and model), or print one recipe file.")
    p.add_argument("name", nargs="?", help="a recipe name or .toml path to print")
    return p


def run(args) -> int:
    if args.name:
        recipe = Recipe.read(args.name)
        print(f"# {recipe.path}")
        print(recipe.path.read_text().rstrip())
        return 0
    recipes = [Recipe.read(name) for name in recipe_names()]
    width = max(len(r.name) for r in recipes)
    for r in recipes:
        print(f"{r.name:<{width}}  {r.summary}")
    return 0
