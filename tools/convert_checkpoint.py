"""``megacpt convert`` (``megacpt.convert.cli``), kept at this path so that documented commands keep working."""

from megacpt.convert.cli import convert_main as main

if __name__ == "__main__":
    main()
