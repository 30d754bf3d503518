"""Corpus cleaning: normalise, filter, identify language and deduplicate JSONL text before tokenising."""
