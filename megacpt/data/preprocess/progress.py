"""A preprocessing run's progress, shown on rank 0 as the sink writes."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """Progress as documents/s, tokens/s and MB/s (tqdm) on stderr, and a plain line every
    ``log_interval`` documents (Megatron-LM's ``--log-interval``)."""

    def __init__(self, enabled: bool, shards: int, log_interval: int | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=shards, unit="shard", disable=not enabled, dynamic_ncols=True)
        self._start = self._shown = time.monotonic()
        self.documents = self.tokens = self.bytes = 0
        self._log_interval = log_interval if enabled else None
        self._logged = 0

    def __call__(self, documents: int, tokens: int, nbytes: int) -> None:
        self.documents += documents
        self.tokens += tokens
        self.bytes += nbytes
        elapsed = max(time.monotonic() - self._start, 1e-9)
        if self._log_interval and self.documents // self._log_interval > self._logged:
            self._logged = self.documents // self._log_interval
            print(
                f"processed {self.documents:,} documents ({self.documents / elapsed:,.0f} docs/s, "
                f"{self.bytes / elapsed / 1e6:.1f} MB/s)",
                file=sys.stderr,
                flush=True,
            )
        if time.monotonic() - self._shown < 0.5:
            return
        self._shown = time.monotonic()
        self._bar.set_postfix_str(
            f"{self.documents / elapsed:,.0f} docs/s, {self.tokens / elapsed:,.0f} tok/s, "
            f"{self.bytes / elapsed / 1e6:.1f} MB/s"
        )

    def shard_done(self) -> None:
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
