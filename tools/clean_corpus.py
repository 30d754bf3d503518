"""``megacpt clean`` (``megacpt.clean.cli``), kept at this path so that documented commands keep working."""

from megacpt.clean.cli import main

if __name__ == "__main__":
    main()
