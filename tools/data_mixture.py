"""Print each dataset's share of a training-token budget, and how many epochs of it that means.

    python tools/data_mixture.py examples/data_mixture.yaml --tokens 2B --split 98,2,0

Weights in the spec are sampling shares, not sizes: a share larger than a dataset means repeats.
"""

from __future__ import annotations

import argparse

from megacpt.data.mixture import DataMixture, format_budget_table, parse_token_count, token_budget_table
from megacpt.errors import exits_on_user_error


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("spec", help="data-mixture YAML file")
    parser.add_argument(
        "--tokens", required=True, help="training-token budget, e.g. 2000000, 2e9, 500M, 100B"
    )
    parser.add_argument(
        "--split", default=None, help="train,valid,test split, e.g. 98,2,0: count only train documents"
    )
    args = parser.parse_args(argv)
    mixture = DataMixture.from_yaml(args.spec)
    rows = token_budget_table(mixture, parse_token_count(args.tokens), split=args.split)
    print(format_budget_table(rows))


if __name__ == "__main__":
    main()
