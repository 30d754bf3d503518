"""Pipelines that chain megacpt's tools end to end: the README's quickstart and its report."""
