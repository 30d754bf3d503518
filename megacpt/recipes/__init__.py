"""Recipes that chain megacpt's stages end to end: the README's quickstart, its report, its corpora."""
