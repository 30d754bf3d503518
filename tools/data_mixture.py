"""``megacpt mix`` (``megacpt.data.cli``), kept at this path so that documented commands keep working."""

from megacpt.data.cli import mix_main as main

if __name__ == "__main__":
    main()
