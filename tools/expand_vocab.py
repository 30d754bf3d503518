"""``megacpt expand`` (``megacpt.tokenizer.cli``), kept at this path so that documented commands keep working."""

from megacpt.tokenizer.cli import main

if __name__ == "__main__":
    main()
