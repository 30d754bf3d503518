"""``megacpt resize`` (``megacpt.convert.cli``), kept at this path so that documented commands keep working."""

from megacpt.convert.cli import resize_main as main

if __name__ == "__main__":
    main()
